"""Where records go: the metric names, the JSONL, the trackers, the console and figures."""
