"""The model's own translations and their quality: prompts, few-shot examples, copy detection, generation, and the metrics (chrF++, BLEU, COMET, CometKiwi)."""
