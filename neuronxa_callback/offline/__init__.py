"""After (or beside) training: checkpoint scoring, correlation with benchmarks, reports."""
