"""Have the chains mixed? Convergence diagnostics of a sampling run's per-step trace.

The trace (free energy of an RBM chain, log-probability for a conditional model) is one scalar
per chain and step: exactly what the standard MCMC diagnostics take. They are computed by ArviZ
(Vehtari et al. 2021: rank-normalised split R-hat, bulk and tail effective sample size) over the
steps after the burn-in, with the chains as ArviZ's chains.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

RHAT_WARNING = 1.05  # above this the chains disagree (Vehtari et al. recommend 1.01 for final results)


def chain_diagnostics(trace: torch.Tensor, burn_in: float = 0.5, acceptance: torch.Tensor | None = None) -> dict:
    """Diagnostics of ``trace`` ``(S + 1, N)`` (one row per step, one column per chain).

    Args:
        trace: the chain's trace; rows with a NaN (steps where nothing was drawn) are left out.
        burn_in: the share of the rows dropped at the start, in [0, 1).
        acceptance: ``(S, N)`` accept indicators of an accept/reject sampler, or None.

    Returns:
        ``draws`` and ``chains`` used, ``rhat`` (rank-normalised split R-hat), ``ess_bulk`` and
        ``ess_tail``, ``iat`` (integrated autocorrelation time in steps: draws x chains / bulk
        ESS), ``acceptance_rate`` (or None) and ``warning`` (a sentence, or None when R-hat is
        at most :data:`RHAT_WARNING`). Values are None where there are too few draws (under 4)
        or chains to say anything.
    """
    if not 0 <= burn_in < 1:
        raise ValueError(f"burn_in must lie in [0, 1), got {burn_in}")
    values = trace.detach().double().cpu().numpy()
    values = values[np.isfinite(values).all(1)]
    kept = values[math.floor(burn_in * len(values)) :].T  # (chains, draws)
    result = {
        "draws": int(kept.shape[1]),
        "chains": int(kept.shape[0]),
        "burn_in": burn_in,
        "rhat": None,
        "ess_bulk": None,
        "ess_tail": None,
        "iat": None,
        "acceptance_rate": None if acceptance is None else float(acceptance.double().mean()),
        "warning": None,
    }
    if kept.shape[1] < 4 or kept.shape[0] < 1:
        return result
    # start-up time: ArviZ takes a second to import; only a run that asks for diagnostics pays it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ArviZ's notice of its coming refactor, and constant-chain warnings
        import arviz

        # ArviZ compares at least two chains: a single chain's halves stand in for two (split R-hat
        # splits each again, so a lone chain is judged by its four quarters)
        halves = kept if kept.shape[0] > 1 else kept[:, : kept.shape[1] // 2 * 2].reshape(2, -1)
        rhat = float(arviz.rhat(halves, method="rank"))
        bulk = float(arviz.ess(kept, method="bulk"))
        tail = float(arviz.ess(kept, method="tail"))
    finite = [v if math.isfinite(v) else None for v in (rhat, bulk, tail)]
    result["rhat"], result["ess_bulk"], result["ess_tail"] = finite
    if result["ess_bulk"]:
        result["iat"] = kept.size / result["ess_bulk"]
    if result["rhat"] is not None and result["rhat"] > RHAT_WARNING:
        result["warning"] = (
            f"R-hat {result['rhat']:.3f} > {RHAT_WARNING}: the chains have not mixed (they disagree about the "
            "trace); run more steps, or anneal from a higher temperature"
        )
    return result


def diagnostics_text(d: dict) -> str:
    """One line for people: what was measured and the figures (``d``: :meth:`Chain.diagnostics`'s)."""
    if d["rhat"] is None:
        return f"diagnostics: too few draws after the burn-in ({d['draws']} steps x {d['chains']} chains)"
    parts = [
        f"R-hat {d['rhat']:.3f}",
        f"bulk ESS {d['ess_bulk']:.0f}",
        f"tail ESS {d['ess_tail']:.0f}",
        f"autocorrelation time {d['iat']:.1f} steps" if d["iat"] is not None else None,
        f"acceptance {d['acceptance_rate']:.2f}" if d["acceptance_rate"] is not None else None,
    ]
    swaps = [r for r in d.get("swap_rates") or () if r is not None]
    if swaps:
        parts.append(f"swap rates {min(swaps):.2f} to {max(swaps):.2f} over {len(swaps)} pairs")
    return (
        f"diagnostics of the trace, last {1 - d['burn_in']:.0%} of the steps ({d['draws']} steps x "
        f"{d['chains']} chains): " + ", ".join(p for p in parts if p)
    )
