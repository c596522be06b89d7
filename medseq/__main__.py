"""``python -m medseq`` entry point."""

from medseq.cli import main

if __name__ == "__main__":
    main()
