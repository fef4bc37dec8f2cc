"""One measurement: its inputs, the collective run, the quality step, the record and the running history."""
