"""probcalc tour: the gradient-and-loss core on a real Bayesian model.

Bayesian logistic regression on the Pima diabetes data (532 women, 7 standardized
covariates plus an intercept, prior N(0, 1) on every coefficient):

1. the gradient of the log joint by autograd, checked against finite differences;
2. the posterior mode (MAP) by three second-order/quasi-Newton methods, against scipy;
3. the Hessian at the mode: curvature gives posterior standard deviations;
4. Hessian-vector products and conjugate gradient: the Newton step without the Hessian;
5. an integral: the predictive probability of diabetes for a new patient, E[sigmoid(x'w)]
   under the Gaussian at the mode, by an 8-dimensional sparse Gauss-Hermite grid;
6. an evidence: log p(y) by importance sampling from that Gaussian (widened), with the
   Pareto k-hat that says whether to trust it;
7. the evidence three ways (quadrature, importance sampling, Laplace) for the model with
   four covariates, as examples/model_comparison.py does for every model;
8. a short policy-gradient run: REINFORCE (the same score-function estimator as
   probcalc.mc) on the ContinuousBandit environment, whose optimum is known;
9. a training run with a progress bar: PPO with a linear policy on a linear-quadratic
   regulator (a double integrator), checked against the Riccati solution.

Run:  bash .ci/venv python examples/demo.py
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import scipy.optimize
import torch
from probcalc.envs.lqr import LQREnv

import probcalc as pc

DATA = Path(__file__).resolve().parent / "data" / "pima_standardized.dat"
NAMES = [
    "intercept",
    "pregnancies",
    "glucose",
    "blood pressure",
    "skin fold",
    "BMI",
    "pedigree",
    "age",
]
PRIOR_PRECISION = 1.0


def main() -> None:
    torch.set_default_dtype(torch.float64)
    # Small models (a 532 x 8 regression, 64x64 policies): one thread is fastest; torch's
    # default of one per core spends the time synchronizing its threads.
    torch.set_num_threads(1)
    data = torch.as_tensor(np.loadtxt(DATA))
    y, X = data[:, 0], torch.cat([torch.ones(len(data), 1), data[:, 1:]], dim=1)

    def neg_log_joint(w: torch.Tensor) -> torch.Tensor:
        """-log p(y, w) up to a constant: Bernoulli likelihood, N(0, 1/tau) prior."""
        return pc.core.bernoulli_nll(y, X @ w) + 0.5 * PRIOR_PRECISION * w @ w

    print(f"Bayesian logistic regression, Pima data: n = {len(y)}, d = {X.shape[1]}\n")

    # 1. derivatives, checked by the limit definition
    w0 = 0.1 * torch.randn(X.shape[1], generator=torch.Generator().manual_seed(0))
    exact = pc.grad(neg_log_joint)(w0)
    for order in (2, 4):
        fd = pc.finite_difference(neg_log_joint, w0, order=order)
        print(
            f"gradient: autograd vs central differences of order {order}: "
            f"max |difference| = {float((exact - fd).abs().max()):.1e}"
        )

    # 2. the posterior mode, three ways, against scipy
    reference = scipy.optimize.minimize(
        lambda w: float(neg_log_joint(torch.as_tensor(w))),
        np.zeros(X.shape[1]),
        jac=lambda w: pc.grad(neg_log_joint)(torch.as_tensor(w)).numpy(),
        method="BFGS",
        options={"gtol": 1e-8},
    )
    print(
        f"\n{'method':<11}{'iterations':>11}{'f evals':>9}{'max|grad|':>12}"
        f"{'|w - scipy|':>13}{'ms':>8}"
    )
    results = {}
    for method in ["newton", "newton-cg", "lbfgs"]:
        start = time.perf_counter()
        result = pc.minimize(neg_log_joint, torch.zeros(X.shape[1]), method=method)
        elapsed = 1e3 * (time.perf_counter() - start)
        results[method] = result
        gap = np.abs(result.x.numpy() - reference.x).max()
        print(
            f"{method:<11}{result.nit:>11}{result.n_evals:>9}{float(result.grad.abs().max()):>12.1e}"
            f"{gap:>13.1e}{elapsed:>8.1f}"
        )
    print(
        f"{'scipy BFGS':<11}{reference.nit:>11}{reference.nfev:>9}"
        f"{np.abs(reference.jac).max():>12.1e}{'':>13}"
    )

    # 3. curvature at the mode: the Gaussian approximation's standard deviations
    mode = results["newton"].x
    H = pc.hessian(neg_log_joint)(mode)
    sd = torch.sqrt(torch.diagonal(torch.linalg.inv(H)))
    print(f"\n{'coefficient':<16}{'mode':>8}{'sd':>8}")
    for name, m, s in zip(NAMES, mode, sd, strict=True):
        print(f"{name:<16}{float(m):>8.3f}{float(s):>8.3f}")

    # 4. Newton step from w0 by conjugate gradient on Hessian-vector products
    operator = pc.hvp_operator(neg_log_joint, w0)
    solve = pc.conjugate_gradient(operator, -operator.grad, rtol=1e-10)
    direct = torch.linalg.solve(pc.hessian(neg_log_joint)(w0), -operator.grad)
    print(
        f"\nNewton step by CG on Hessian-vector products: {solve.nit} products, "
        f"max |CG - direct solve| = {float((solve.x - direct).abs().max()):.1e}"
    )

    # 5. an integral: p(diabetes | a new patient) = E[sigmoid(x'w)], w ~ N(mode, H^-1)
    patient = torch.tensor([1.0, 0.5, 1.2, 0.0, 0.3, 0.8, 0.2, 0.4])  # standardized covariates
    covariance = torch.linalg.inv(H)
    result = pc.integrate.expect_normal(lambda w: torch.sigmoid(w @ patient), mode, covariance)
    mean, var = float(patient @ mode), float(patient @ covariance @ patient)
    probit = float(torch.sigmoid(torch.tensor(mean / (1 + torch.pi * var / 8) ** 0.5)))
    print(
        f"\np(diabetes | patient): {float(result.value):.6f} by 8-D sparse Gauss-Hermite "
        f"({result.n_evals} points, error {float(result.error):.1e}); "
        f"probit approximation {probit:.6f}; plug-in at the mode "
        f"{float(torch.sigmoid(torch.tensor(mean))):.6f}"
    )

    # 6. an evidence: log p(y) = log ∫ p(y, w) dw by importance sampling
    def log_joint(w: torch.Tensor) -> torch.Tensor:  # w: (n, 8), the full log p(y, w)
        log_prior = -0.5 * PRIOR_PRECISION * (w * w).sum(1) + 4 * math.log(
            PRIOR_PRECISION / (2 * math.pi)
        )
        return log_prior - torch.nn.functional.binary_cross_entropy_with_logits(
            w @ X.T, y.expand(len(w), -1), reduction="none"
        ).sum(1)

    proposal = torch.distributions.MultivariateNormal(mode, 1.2**2 * covariance)
    evidence = pc.mc.importance_sampling(log_joint, proposal, 20_000, seed=0)
    print(
        f"\nlog evidence by importance sampling: {float(evidence.log_evidence):.4f} "
        f"± {float(evidence.stderr):.4f} (Pareto k-hat {evidence.khat:.2f}, "
        f"effective sample size {evidence.ess:.0f} of 20000)"
    )

    # 7. the evidence three ways, intercept + pregnancies, glucose, BMI, pedigree (d = 5)
    X5 = X[:, [0, 1, 2, 5, 6]]

    def log_joint5(w: torch.Tensor) -> torch.Tensor:
        log_prior = -0.5 * PRIOR_PRECISION * w @ w + 2.5 * math.log(PRIOR_PRECISION / (2 * math.pi))
        return log_prior - pc.core.bernoulli_nll(y, X5 @ w)

    print("\nlog evidence, intercept + pregnancies, glucose, BMI, pedigree:")
    for method, options in (("quadrature", {"rtol": 1e-6}), ("mc", {"seed": 0}), ("laplace", {})):
        start = time.perf_counter()
        result = pc.evidence(log_joint5, method=method, theta0=torch.zeros(5), **options)
        error = f" ± {float(result.error):.1e}" if math.isfinite(result.error) else ""
        print(
            f"  {method:<11}{float(result.log_evidence):.4f}{error:<12}"
            f"({time.perf_counter() - start:.1f} s)"
        )

    # 8. a short policy-gradient run on a bandit with a known optimum
    start = time.perf_counter()
    agent = pc.rl.REINFORCE(
        "probcalc/ContinuousBandit-v0",
        policy="linear",
        n_envs=64,
        n_steps=2,
        log_std_init=math.log(0.2),
        learning_rate=0.02,
        lr_schedule="linear",
        learn_std=False,
        seed=0,
    )
    before, _ = pc.rl.evaluate(agent, "probcalc/ContinuousBandit-v0", n_episodes=50, seed=0)
    agent.learn(total_steps=40_000)
    after, _ = pc.rl.evaluate(agent, "probcalc/ContinuousBandit-v0", n_episodes=50, seed=0)
    action = agent.predict(np.zeros(1, dtype=np.float32))  # one observation: one action
    print(
        f"\nREINFORCE on ContinuousBandit-v0, 40,000 steps in "
        f"{time.perf_counter() - start:.1f} s: mean return {before:.3f} -> {after:.3f} "
        f"(best possible 1.0); action {np.round(action, 3)}, optimum [0.3, -0.5]"
    )

    # 9. PPO on an LQR, with the progress bar, against the exact optimal controller
    double_integrator = {
        "A": [[1.0, 0.1], [0.0, 1.0]],
        "B": [[0.0], [0.1]],
        "gamma": 0.95,
        "noise_std": 0.05,
    }
    env = LQREnv(**double_integrator)
    print("\nPPO, linear policy, on probcalc/LQR-v0 (a double integrator, discount 0.95):")
    agent = pc.rl.PPO(
        "probcalc/LQR-v0",
        env_kwargs=double_integrator,
        policy="linear",
        n_envs=8,
        n_steps=128,
        gamma=0.95,
        learning_rate=5e-3,
        lr_schedule="linear",
        log_std_init=math.log(0.05),
        learn_std=False,
        batch_size=128,
        max_grad_norm=10.0,
        normalize_rewards=True,
        seed=1,
    )
    with torch.no_grad():  # start from the zero controller u = 0
        agent.policy.mean[0].weight.zero_()
        agent.policy.mean[0].bias.zero_()
    initial = env.policy_cost(np.zeros((1, 2)))
    agent.learn(total_steps=100_000, progress_bar=True)
    gain = -env.action_scale * agent.policy.mean[0].weight.detach().double().numpy()
    optimal = env.optimal_gain()
    print(
        f"  discounted cost from the start: u = 0 {initial:.1f}, learned "
        f"{env.policy_cost(gain):.3f}, optimal {env.policy_cost(optimal):.3f}; "
        f"gain {np.round(gain, 2)}, Riccati {np.round(optimal, 2)}"
    )


if __name__ == "__main__":
    main()
