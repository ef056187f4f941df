"""Running normalization against numpy's statistics of the same data."""

import numpy as np
import pytest

from probcalc.rl import ObservationNormalizer, RewardNormalizer, RunningMeanStd


def test_batch_updates_give_numpys_mean_and_variance_of_the_concatenation():
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, size=(n, 3)) for n in (1, 7, 100, 2, 513)]
    stats = RunningMeanStd((3,))
    for batch in batches:
        stats.update(batch)
    everything = np.concatenate(batches)
    np.testing.assert_allclose(stats.mean, everything.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(stats.var, everything.var(axis=0), rtol=1e-12)
    assert stats.count == len(everything)


def test_merging_two_sets_of_statistics_equals_the_statistics_of_both():
    rng = np.random.default_rng(1)
    a, b = rng.exponential(size=(300, 2)), rng.normal(-5, 0.1, size=(41, 2))
    left, right = RunningMeanStd((2,)), RunningMeanStd((2,))
    left.update(a)
    right.update(b)
    left.merge(right.mean, right.var, right.count)
    np.testing.assert_allclose(left.mean, np.concatenate([a, b]).mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(left.var, np.concatenate([a, b]).var(axis=0), rtol=1e-12)


def test_a_batch_of_the_wrong_shape_is_a_value_error():
    with pytest.raises(ValueError, match="shape"):
        RunningMeanStd((3,)).update(np.zeros((4, 2)))


def test_reward_scale_is_the_std_of_the_discounted_return_under_the_algorithms_gamma():
    """Two environments, episodes ending at known steps, an autoreset step after each end:
    the statistics are those of R_t = γ R_(t-1) + r_t computed by hand, autoresets left out."""
    gamma = 0.9
    rng = np.random.default_rng(2)
    rewards = rng.normal(size=(50, 2))
    done = np.zeros((50, 2), dtype=bool)
    done[[9, 30], 0] = True
    done[[19], 1] = True
    skip = np.zeros_like(done)
    skip[1:] = done[:-1]
    normalizer = RewardNormalizer(n_envs=2, gamma=gamma)
    expected = []
    for env in range(2):
        running = 0.0
        for t in range(50):
            if skip[t, env]:
                continue
            running = gamma * running + rewards[t, env]
            expected.append((t, running))
            if done[t, env]:
                running = 0.0
    for t in range(50):
        normalizer.update(rewards[t], done[t], skip[t])
    values = np.array([value for _, value in expected])
    np.testing.assert_allclose(normalizer.stats.var, values.var(), rtol=1e-12)
    assert normalizer.stats.count == len(values)
    scaled = normalizer(rewards[0])
    np.testing.assert_allclose(scaled, rewards[0] / np.sqrt(values.var() + 1e-8), rtol=1e-6)


def test_observations_are_standardized_and_clipped():
    rng = np.random.default_rng(3)
    data = rng.normal(10.0, 4.0, size=(1000, 2))
    normalizer = ObservationNormalizer((2,), clip=3.0)
    normalizer.update(data)
    scaled = normalizer(data)
    expected = np.clip((data - data.mean(0)) / np.sqrt(data.var(0) + 1e-8), -3, 3)
    np.testing.assert_allclose(scaled, expected, rtol=1e-5, atol=1e-6)
    assert scaled.dtype == np.float32 and scaled.max() <= 3.0


def test_one_item_is_not_scaled_by_its_zero_variance():
    """After one reward the variance is 0; the scale stays 1 until there are two."""
    normalizer = RewardNormalizer(n_envs=1, gamma=0.99)
    normalizer.update(np.array([-3.0]), np.array([False]))
    np.testing.assert_allclose(normalizer(np.array([-3.0])), [-3.0], rtol=1e-6)
    observations = ObservationNormalizer((2,))
    observations.update(np.array([[1.0, 2.0]]))
    np.testing.assert_allclose(observations(np.array([[1.0, 2.0]])), [[0.0, 0.0]], atol=1e-6)
