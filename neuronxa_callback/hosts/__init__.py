"""Training loops that drive the monitor: the Hugging Face Trainer (and TRL), Lightning, Accelerate."""
