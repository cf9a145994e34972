"""LLM clients (local llama.cpp, SageMaker/TGI, OpenAI-compatible) and grounded prompts."""
