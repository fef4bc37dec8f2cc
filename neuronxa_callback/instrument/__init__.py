"""The instrument: which modules hold a model's MLP neurons, capturing and pooling their activations, loading models, leaving them as found, and peak memory."""
