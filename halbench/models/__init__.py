"""Model backends: local Hugging Face VLMs and OpenAI-compatible HTTP servers."""
