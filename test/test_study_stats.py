"""The study's statistics: t and noncentral t without scipy, Welch, paired vs unpaired, TOST, power."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import TINY
from toolkit.analysis import study
from toolkit.analysis.student_t import betainc, detectable_difference, nct_cdf, t_cdf, t_ppf, t_test_power
from toolkit.analysis.study_cells import seeds_paired
from toolkit.analysis.study_stats import SeedInterval, seed_interval, welch_df
from toolkit.utils.config import dump_yaml

# Student t quantiles from the printed tables (df -> t_0.975); plus t_0.95 and t_0.995 rows
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 8: 2.306, 10: 2.228, 30: 2.042}


@pytest.mark.parametrize("df,quantile", sorted(T_975.items()))
def test_t_quantiles_match_the_printed_table(df, quantile):
    assert t_ppf(0.975, df) == pytest.approx(quantile, abs=1e-3)
    assert t_ppf(0.025, df) == pytest.approx(-quantile, abs=1e-3)


def test_other_t_quantiles_and_the_closed_form_cdfs():
    assert t_ppf(0.95, 4) == pytest.approx(2.132, abs=1e-3)
    assert t_ppf(0.995, 3) == pytest.approx(5.841, abs=1e-3)
    for x in (-7.0, -1.0, 0.3, 2.5, 40.0):  # df 1 is Cauchy, df 2 has a closed form too
        assert t_cdf(x, 1) == pytest.approx(0.5 + math.atan(x) / math.pi, abs=1e-12)
        assert t_cdf(x, 2) == pytest.approx(0.5 + x / (2.0 * math.sqrt(2.0 + x * x)), abs=1e-12)


def test_incomplete_beta_matches_its_closed_forms():
    for x in (0.01, 0.3, 0.77, 0.999):
        assert betainc(x, 1.0, 3.5) == pytest.approx(1.0 - (1.0 - x) ** 3.5, rel=1e-12)
        assert betainc(x, 2.5, 1.0) == pytest.approx(x ** 2.5, rel=1e-12)
        assert betainc(x, 4.0, 0.5) == pytest.approx(1.0 - betainc(1.0 - x, 0.5, 4.0), abs=1e-13)


def test_welch_df_is_satterthwaites_and_pools_equal_variances():
    # var 1 over 3 seeds vs var 4 over 5: (1/3 + 4/5)^2 / ((1/3)^2/2 + (4/5)^2/4)
    assert welch_df(1.0, 3, 4.0, 5) == pytest.approx(5.9588, abs=1e-4)
    assert welch_df(2.0, 4, 2.0, 4) == pytest.approx(6.0)
    assert welch_df(1e-9, 3, 5.0, 5) == pytest.approx(4.0, abs=1e-6)  # one side's noise dominates: its n - 1


def test_paired_interval_is_the_t_interval_of_the_per_seed_differences():
    iv = seed_interval({1: 11.0, 2: 12.0, 3: 13.0}, {1: 10.0, 2: 10.0, 3: 10.0}, paired=True)
    assert (iv.method, iv.mean, iv.df, iv.seeds) == ("paired t", 2.0, 2.0, (3, 3))
    assert iv.hi - iv.mean == pytest.approx(4.303 * 1.0 / math.sqrt(3), abs=1e-3)


def test_unpaired_or_unmatched_seeds_get_welch():
    x, y = {1: 20.0, 2: 22.0, 3: 24.0}, {1: 21.0, 2: 25.0, 4: 23.0}
    welch = seed_interval(x, y, paired=False)
    assert welch.method == "Welch t" and welch.mean == pytest.approx(22.0 - 23.0)
    assert welch.se == pytest.approx(math.sqrt(4.0 / 3 + 4.0 / 3)) and welch.df == pytest.approx(4.0)
    # paired asked for, but only two seeds are common: still paired over those two
    assert seed_interval(x, y, paired=True).seeds == (2, 2)
    assert seed_interval({1: 1.0, 2: 2.0}, {3: 1.0, 4: 3.0}, paired=True).method == "Welch t"
    assert seed_interval({1: 1.0}, {1: 2.0, 2: 3.0}, paired=False) is None


def test_tost_needs_the_whole_90_percent_interval_inside_the_margin():
    tight = SeedInterval("paired t", 0.1, 0.2, 10.0, (11, 11))
    equivalent, (lo, hi) = tight.tost(1.0)
    assert equivalent and (lo, hi) == pytest.approx((0.1 - 1.8125 * 0.2, 0.1 + 1.8125 * 0.2), abs=1e-4)
    straddling = SeedInterval("Welch t", -0.94, 1.55, 3.6, (3, 3))  # straddles 0: shows nothing
    assert straddling.lo < 0 < straddling.hi and not straddling.tost(1.0)[0]
    assert not SeedInterval("paired t", 0.9, 0.1, 10.0, (11, 11)).tost(1.0)[0]  # 90 % reaches past +1


def test_noncentral_t_cdf_matches_a_simulation_and_the_central_t():
    rng = np.random.default_rng(0)
    for df, nc in ((3, 1.5), (8, -0.7), (2.5, 3.0)):
        t = (rng.standard_normal(200_000) + nc) / np.sqrt(rng.chisquare(df, 200_000) / df)
        for x in (-1.0, 0.5, 2.0, 4.0):
            assert nct_cdf(x, df, nc) == pytest.approx((t <= x).mean(), abs=0.005)
    for df in (1, 3, 7.5):
        assert nct_cdf(1.3, df, 0.0) == pytest.approx(t_cdf(1.3, df), abs=1e-6)


def test_power_matches_r_power_t_test():
    # R: power.t.test(n = 20, delta = 1, sd = 1) -> 0.8689528 (one tail; the other adds ~2e-7)
    assert t_test_power(1.0, math.sqrt(2.0 / 20), 38) == pytest.approx(0.8689528, abs=1e-6)


def test_detectable_difference_has_80_percent_power_in_a_simulated_paired_t_test():
    n, sd = 5, 1.0
    delta = detectable_difference(sd / math.sqrt(n), n - 1)
    assert delta > (1.959964 + 0.841621) * sd / math.sqrt(n)  # the normal approximation promises too much
    rng = np.random.default_rng(1)
    d = rng.normal(delta, sd, (40_000, n))
    t = d.mean(1) / (d.std(1, ddof=1) / math.sqrt(n))
    assert (np.abs(t) > t_ppf(0.975, n - 1)).mean() == pytest.approx(0.8, abs=0.01)


def _cell_dir(tmp_path, name, seed, **model_conf):
    d = tmp_path / name / f"seed{seed}"
    d.mkdir(parents=True)
    dump_yaml({"seed": seed, "model": "joint", "model_conf": {**TINY, **model_conf}, "vocab_size": 12,
               "num_phones": 9, "objective": {"consistency": {"weight": 0.05 if name == "C" else 0.0}}},
              d / "config.yaml")
    return d


def test_init_digest_is_equal_only_for_the_same_seed_and_model(tmp_path):
    b1, c1, c2 = _cell_dir(tmp_path, "B", 1), _cell_dir(tmp_path, "C", 1), _cell_dir(tmp_path, "C", 2)
    p1 = _cell_dir(tmp_path, "P", 1, transducer="pruned")
    digest = study.init_digest(b1)
    assert len(digest) == 64 and digest == study.init_digest(c1)  # objective weights do not touch step 0
    assert digest != study.init_digest(c2) and digest != study.init_digest(p1)  # another seed; extra parameters
    assert study.init_digest(tmp_path) is None  # no config.yaml


def test_seeds_are_paired_by_digest_else_by_model_config(tmp_path):
    cell = lambda name, seed, d, **kw: {"condition": name, "seed": seed, "_dir": str(d), **kw}  # noqa: E731
    b = [cell("B", k, _cell_dir(tmp_path, "B", k)) for k in (1, 2)]
    c = [cell("C", k, _cell_dir(tmp_path, "C", k)) for k in (1, 2)]
    p = [cell("P", k, _cell_dir(tmp_path, "P", k, transducer="pruned")) for k in (1, 2)]
    assert seeds_paired(c, b)[0] and not seeds_paired(p, c)[0]
    assert not seeds_paired(c, [{"condition": "X", "seed": 1}, {"condition": "X", "seed": 2}])[0]  # nothing recorded
    dig = lambda cs, v: [{**x, "init_digest": v + str(x["seed"])} for x in cs]  # noqa: E731
    assert seeds_paired(dig(p, "a"), dig(c, "a"))[0]  # recorded digests decide when every cell has one
    assert not seeds_paired(dig(c, "a"), dig(b, "b"))[0]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 100, allow_nan=False, allow_subnormal=False), min_size=1, max_size=20),
       st.floats(0, 5, allow_subnormal=False))  # an earlier test may load a library that sets flush-to-zero
def test_the_schedule_rule_against_its_definition(wers, within):
    from toolkit.analysis.study_grid import choose_schedule
    curve = list(enumerate(wers, 1))
    chosen, best_epoch, best = choose_schedule(curve, within)
    assert best == min(wers) and wers[best_epoch - 1] == best and chosen <= best_epoch
    assert wers[chosen - 1] <= best + within and all(w > best + within for w in wers[:chosen - 1])
