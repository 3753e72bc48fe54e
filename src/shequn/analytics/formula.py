"""The seeds' formula and its period-over-period decomposition (pure functions, no database).

    销售额 = 流量 × 体验率 × 转化率 × 客单价 × 复购系数
    sales  = traffic × experience rate × conversion × AOV × repurchase

with ``traffic`` T = link visitors + joins, ``experienced`` X = members who took a first free or
entry action (joined, first-ever message, first-ever purchase) or bought, ``buyers`` B, ``orders`` O
and ``sales`` S (paid GMV, fen):

    experience rate = X / T,  conversion = B / X,  AOV = S / O,  repurchase = O / B   (orders per buyer)

The product telescopes to S exactly. The change S1 − S0 is split with the log-mean Divisia index
(LMDI-I): factor k contributes ``L(S1, S0) · ln(x1k / x0k)`` with ``L(a, b) = (a − b) / (ln a − ln b)``
(``L(a, a) = a``); the contributions add up to S1 − S0 exactly (up to float rounding), because the
logs of the factor ratios add up to ``ln(S1 / S0)``. The decomposition needs every factor positive in
both periods; otherwise it is not formed (``None``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

FACTORS = ("traffic", "experience", "conversion", "aov", "repurchase")


@dataclass(frozen=True)
class Figures:
    visitors: int = 0
    joins: int = 0
    experienced: int = 0
    buyers: int = 0
    orders: int = 0
    sales_fen: int = 0
    repeat_buyers: int = 0
    refund_fen: int = 0

    @property
    def traffic(self) -> int:
        return self.visitors + self.joins

    def factors(self) -> dict[str, float | None]:
        def ratio(a: int, b: int) -> float | None:
            return a / b if b else None

        return {"traffic": float(self.traffic), "experience": ratio(self.experienced, self.traffic),
                "conversion": ratio(self.buyers, self.experienced), "aov": ratio(self.sales_fen, self.orders),
                "repurchase": ratio(self.orders, self.buyers)}

    def product(self) -> float | None:
        """traffic × experience × conversion × AOV × repurchase (None when a factor is undefined)."""
        result = 1.0
        for value in self.factors().values():
            if value is None:
                return None
            result *= value
        return result

    @property
    def repeat_rate(self) -> float | None:
        return self.repeat_buyers / self.buyers if self.buyers else None


def log_mean(a: float, b: float) -> float:
    if a == b:
        return a
    return (a - b) / (math.log(a) - math.log(b))


@dataclass(frozen=True)
class Decomposition:
    change_fen: int
    change_pct: float | None
    factor_pct: dict[str, float]  # each factor's own change, percent
    contribution_fen: dict[str, float]  # LMDI: sums to change_fen
    contribution_pct: dict[str, float]  # contribution as percent of the earlier sales


def decompose(before: Figures, after: Figures) -> Decomposition | None:
    f0, f1 = before.factors(), after.factors()
    if any(v is None or v <= 0 for v in (*f0.values(), *f1.values())):
        return None
    s0, s1 = float(before.sales_fen), float(after.sales_fen)
    weight = log_mean(s1, s0)
    contribution = {k: weight * math.log(f1[k] / f0[k]) for k in FACTORS}  # type: ignore[operator]
    return Decomposition(
        change_fen=after.sales_fen - before.sales_fen,
        change_pct=(s1 - s0) / s0 * 100,
        factor_pct={k: (f1[k] / f0[k] - 1) * 100 for k in FACTORS},  # type: ignore[operator]
        contribution_fen=contribution,
        contribution_pct={k: v / s0 * 100 for k, v in contribution.items()},
    )
