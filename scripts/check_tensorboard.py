"""Read scir's TensorBoard event files with TensorBoard's own reader (not run by CI).

    pip install tensorboard
    python scripts/check_tensorboard.py artifacts/tensorboard/scir/train@1

Prints the scalar tags and, for train/loss, every (step, value): the numbers of the task's
metrics table (`scir sql "SELECT step, loss FROM train_metrics WHERE arm = 'scir' AND
iteration = 1"`).
"""
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def main(run_dir: str) -> None:
    acc = EventAccumulator(run_dir)
    acc.Reload()
    tags = acc.Tags()["scalars"]
    print(f"{run_dir}: {len(tags)} scalar tags: {', '.join(tags)}")
    for event in acc.Scalars("train/loss"):
        print(f"  train/loss step {event.step}: {event.value:.6f}")


if __name__ == "__main__":
    main(sys.argv[1])
