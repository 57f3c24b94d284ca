"""`vllm-fastmtp`: vLLM's CLI with the FastMTP plugin, working on the CPU build too.

`vllm-fastmtp serve MODEL --speculative-config '{"method":"fastmtp"}'` takes exactly the arguments of
`vllm serve`. With official (GPU) vLLM, plain `vllm serve` works as well: the plugin loads through its entry point.
"""

import sys


def main() -> None:
    from vllm_fastmtp.integration.cli_shim import run_vllm_cli

    sys.exit(run_vllm_cli())


if __name__ == "__main__":
    main()
