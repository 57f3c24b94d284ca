"""vLLM plugin: `method: "fastmtp"` speculative decoding with a recursively applied MTP head."""


def register() -> None:
    """Entry point of the `vllm.general_plugins` group; vLLM calls it once in every process."""
    from vllm_fastmtp.integration import install

    install()
