"""LLM clients (local llama.cpp, SageMaker/TGI, OpenAI-compatible), their factory and the helper-call wrapper."""
