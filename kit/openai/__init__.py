"""An OpenAI-compatible API in front of the kit's Triton server.

Clients that speak the OpenAI API (the ``openai`` SDK, LangChain, ``vllm bench serve``...)
reach the guarded pipeline (``llama_bls_ensemble``, the default model) or the bare LLM
(``llama3-8b-instruct``) through ``/v1/chat/completions``, ``/v1/completions`` and
``/v1/models``. The service is a FastAPI application served by uvicorn; it talks to Triton
over gRPC streaming with ``tritonclient``'s asyncio client.

Start it beside Triton with ``python -m kit serve --openai [--openai-port N]`` (``kit stop``
stops both), or on its own with ``python -m kit.openai --grpc-url grpc://HOST:PORT``.

The guard in OpenAI's terms: a refused prompt ends with ``finish_reason: "content_filter"``
and the refusal text; each choice carries the extra field ``censored_words`` (in a stream,
on the chunk that ends the choice): how many banned words the pipeline masked in it.
The bare LLM reports 0 there.

An API key (``KIT_OPENAI_API_KEY`` in the environment or in ``.env``) makes every ``/v1``
route require ``Authorization: Bearer <key>``. The service binds 127.0.0.1 by default.
"""

from kit.openai.app import Settings, create_app

__all__ = ["Settings", "create_app"]
