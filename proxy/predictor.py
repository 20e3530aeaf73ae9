"""Regressors from mixture ratios to one metric: LightGBM (paper: gbdt, 300 rounds, lr 1e-2) or ridge (alpha 0.5)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from proxy.errors import ProxyError

PREDICTORS = ("lightgbm", "ridge")


@dataclass(frozen=True)
class PredictorSettings:
    """Which regressor and its paper settings; LightGBM's leaf sizes adapt to the (small) sample count."""

    kind: str = "lightgbm"
    n_estimators: int = 300
    learning_rate: float = 1e-2
    ridge_alpha: float = 0.5
    seed: int = 0
    num_threads: int = 1

    def __post_init__(self) -> None:
        if self.kind not in PREDICTORS:
            raise ProxyError(f"predictor: {self.kind!r} is not one of {', '.join(PREDICTORS)}")


class MetricPredictor:
    """Fits ratios [N, K] -> y [N] and predicts over a pool; deterministic for the settings' seed."""

    def __init__(self, settings: PredictorSettings = PredictorSettings()):
        self.settings = settings
        self._model = None

    def fit(self, x: np.ndarray, y: np.ndarray) -> MetricPredictor:
        """Fit on N evaluated mixtures; raises ValueError when N < 2."""
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        if x.shape[0] < 2:
            raise ProxyError(f"predictor needs at least 2 evaluated mixtures, got {x.shape[0]}")
        s = self.settings
        if s.kind == "ridge":
            from sklearn.linear_model import Ridge  # noqa: PLC0415 - heavy, imported when used

            self._model = Ridge(alpha=s.ridge_alpha).fit(x, y)
        else:
            import lightgbm as lgb  # noqa: PLC0415 - heavy, imported when used

            n = x.shape[0]
            self._model = lgb.LGBMRegressor(
                boosting_type="gbdt",
                n_estimators=s.n_estimators,
                learning_rate=s.learning_rate,
                num_leaves=max(4, min(31, n // 4)),
                min_child_samples=max(2, min(20, n // 10)),
                min_child_weight=1e-3,
                min_data_in_bin=1,
                max_bin=255,
                subsample=1.0,
                colsample_bytree=1.0,
                random_state=s.seed,
                deterministic=True,
                force_row_wise=True,
                n_jobs=s.num_threads,
                verbose=-1,
            ).fit(x, y)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predictions for mixtures [M, K]; raises RuntimeError before fit."""
        if self._model is None:
            raise RuntimeError("predict before fit")
        return np.asarray(self._model.predict(np.asarray(x, dtype=np.float64)), dtype=np.float64)
