"""Fine-tuning the retrieval models on labelled (query, relevant document) pairs."""
