"""Publishing a built benchmark: TREC qrels and runs, and a Hugging Face dataset (saved, carded, pushed)."""
