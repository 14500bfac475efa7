"""Training on Ray Train: one TrainJob, one `fit`, reused by plain runs, trials and students."""
