"""Data-parallel PPO on Pendulum-v1 with torch.distributed: every process steps its own
environments, and the gradients of each minibatch are summed over the processes, so all of
them hold the same policy after every update.

    torchrun --nproc_per_node=2 examples/data_parallel.py --steps 100000
    python examples/data_parallel.py --steps 100000          # one process: the same code

Rank 0 alone draws the progress bar, writes runs/data_parallel and evaluates the policy.
"""

from __future__ import annotations

import argparse
import datetime
import os

import torch
import torch.distributed as dist

import probcalc as pc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100_000, help="steps of all processes")
    parser.add_argument("--out", default="runs/data_parallel")
    args = parser.parse_args()
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:  # torchrun sets RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT
        dist.init_process_group("gloo", timeout=datetime.timedelta(minutes=5))
    torch.set_num_threads(1)  # one core per process
    try:
        # rl-zoo3's settings for one process; under torchrun n_envs is per process
        agent = pc.rl.PPO("Pendulum-v1", seed=0, **pc.rl.tuned("ppo", "Pendulum-v1"))
        agent.learn(
            args.steps, progress_bar=True, log_dir=args.out, checkpoint_every=args.steps // 4
        )
        if agent.rank == 0:
            mean, std = pc.rl.evaluate(agent, n_episodes=10, seed=1000)
            print(
                f"{agent.world_size} process(es), {agent.num_timesteps} steps: "
                f"return {mean:.1f} ± {std:.1f}"
            )
        if distributed:
            dist.barrier()  # leave together
    finally:
        if distributed:
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
