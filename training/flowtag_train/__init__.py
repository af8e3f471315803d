"""flowtag-train: loaders, features, models, evaluation and MLflow tracking for flowtag."""
