"""From pooled representations to scores: the paper's Eq. 4 per layer, similarity baselines, and the alignment report."""
