"""`python -m storyreel` (and `accelerate launch -m storyreel ...`)."""

from storyreel.cli import main

if __name__ == "__main__":
    main()
