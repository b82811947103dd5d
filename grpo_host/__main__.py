"""`python -m grpo_host` runs the CLI."""

from grpo_host.cli import main

if __name__ == "__main__":
    main()
