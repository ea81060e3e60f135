"""The steps of ``graftkit.auto``: the classical baseline, a linear probe, a trainable rung, the test scoring;
each appends a leaderboard row with its reason, time, memory and trainable parameters."""

from __future__ import annotations

import logging
import time


from graftkit.errors import GraftkitError
from graftkit.evaluation.baselines import ClassicalBaseline, penalty_text
from graftkit.playbook.budget import estimate_trainable, format_seconds, peak_rss_mib
from graftkit.playbook.leaderboard import bootstrap_std

logger = logging.getLogger(__name__)

BASELINE_FEATURES = {"text": "tfidf", "image": "pixels", "audio": "log-mel"}
ESTIMATOR_NAMES = {"logistic regression": "logreg", "one-vs-rest logistic regression": "ovr-logreg", "ridge": "ridge"}


class Run:
    """The state of one ``auto`` call: the splits, the clock, the rows and the step log."""

    def __init__(self, clock, train, val, test, task, settings):
        self.clock, self.train, self.val, self.test, self.task = clock, train, val, test, task
        self.metric = task.primary_metric
        self.perfect_score = (1.0 if task.greater_is_better else -1.0) * task.best_possible  # as ``score`` reads
        self.settings = settings
        encode = self._encode
        self.y_train, self.y_val = encode(train), encode(val)
        self.y_test = None if test is None else encode(test)
        self.rows, self.steps, self.models = [], [], {}
        self.forward_s = {}     # backbone -> measured inference seconds per row
        self.correction = 1.0   # measured / estimated time of the last trainable step
        # training rows a trainable step embeds with the pretrained backbone before training: none when the
        # probe's feature cache holds them
        self.feature_rows = len(train) if not settings.get("use_cache", True) else 0
        self.first_probe_rows = None  # the training rows the first probe saw, when the budget cut them

    def _encode(self, table):
        return self.task.encode(table)

    def metrics(self, y, outputs, calibration=None) -> dict:
        """The task's headline metrics, and ``score``: the primary one, oriented so that larger is better."""
        summary = self.task.summary(y, outputs, calibration)
        sign = 1.0 if self.task.greater_is_better else -1.0
        return {**summary, "score": sign * summary[self.metric]}

    def model_metrics(self, model, table, y) -> dict:
        return self.metrics(y, model.outputs(table), model.active_calibration())

    def log(self, action: str, reason: str) -> None:
        self.steps.append({"action": action, "reason": reason, "elapsed_s": round(self.clock.elapsed, 2)})
        logger.info("auto: %s: %s", action, reason)

    def row(self, kind, backbone, strategy, status, reason, **extra) -> dict:
        row = {"step": len(self.rows) + 1, "kind": kind, "backbone": backbone, "strategy": strategy,
               "status": status, "reason": reason, "validation": None, "test": None, "seconds": None,
               "estimated_s": None, "peak_rss_mib": None, "parameters": None, "chosen": False, **extra}
        self.rows.append(row)
        self.log(f"{backbone} / {strategy}: {status}", reason)
        return row

    def reserve(self) -> float:
        """Seconds kept back for scoring the test set with every fitted pretrained model, and saving."""
        if self.test is None:
            return 2.0
        forward = max(self.forward_s.values(), default=0.0)
        return 2.0 + forward * len(self.test) * (len(self.models) + 1)

    def budget_note(self, estimate: float) -> tuple[bool, str]:
        left = self.clock.remaining(self.reserve())
        return estimate <= left, (f"estimated {estimate:.0f}s, {max(left, 0):.0f}s left of the "
                                  f"{format_seconds(self.clock.budget_s)} budget")

    # -- the steps ----------------------------------------------------------------------------------------------
    def baseline(self, modality: str, seed: int):
        started = time.perf_counter()
        baseline = ClassicalBaseline(modality, task=self.task, seed=seed)
        baseline.fit(self.train.items(), self.y_train, where=lambda i: self.train.where(i, self.train.input_column))
        count = int(baseline.info_["parameters"])
        features = getattr(baseline.featurizer_, "short_name", None) or BASELINE_FEATURES[modality]
        name = f"{features} + {ESTIMATOR_NAMES[baseline.estimator_name]}"
        self.row("baseline", "classical baseline", name, "ran",
                 f"always run: the cheap classical reference ({baseline.description}, "
                 f"{penalty_text(baseline.info_)} by CV)",
                 validation=self.metrics(self.y_val, baseline.outputs(self.val.items())),
                 seconds=round(time.perf_counter() - started, 3), peak_rss_mib=peak_rss_mib(),
                 parameters={"trainable": count, "total": count, "share": 1.0})
        return baseline

    def probe(self, spec: str, reason: str, graft_options: dict, train=None, model=None) -> None:
        """A linear probe on ``train`` (default: every training row; the first probe may get a subsample that
        fits the budget, playbook/bounded.py), fitting ``model`` when given (an unfitted probe ``Graft`` whose
        backbone is already loaded)."""
        from graftkit.graft import Graft

        train = self.train if train is None else train
        model = model or Graft(backbone=spec, strategy="linear-probe", **graft_options)
        started = time.perf_counter()
        try:
            model = model.fit(train, validation=self.val)
            embedded = [(model.timings_["extraction_s"], model.timings_["embedded_rows"])]
            validation = self.model_metrics(model, self.val, self.y_val)
            embedded.append((model.last_extraction_["seconds"], model.last_extraction_["embedded"]))
        except GraftkitError as exc:
            self.row("probe", spec, "linear-probe", "failed", f"{reason}; failed: {exc}",
                     seconds=round(time.perf_counter() - started, 3))
            return
        seconds = round(time.perf_counter() - started, 3)
        self._measure_forward(spec, model, embedded)
        row = self.row("probe", spec, "linear-probe", "ran", reason, validation=validation, seconds=seconds,
                       peak_rss_mib=peak_rss_mib(), parameters=model.parameter_counts(), train_rows=len(train))
        self.models[row["step"]] = model

    def zero_shot(self, spec: str, reason: str, graft_options: dict, label_descriptions, template) -> None:
        """Rung 0: class descriptions (or names) scored by similarity; calibrated on the training rows."""
        from graftkit.graft import Graft

        started = time.perf_counter()
        try:
            model = Graft(backbone=spec, strategy="zero-shot", label_descriptions=label_descriptions,
                          template=template, **graft_options).fit(self.train)
            validation = self.model_metrics(model, self.val, self.y_val)
        except GraftkitError as exc:
            self.row("zero-shot", spec, "zero-shot", "failed", f"{reason}; failed: {exc}",
                     seconds=round(time.perf_counter() - started, 3))
            return
        row = self.row("zero-shot", spec, "zero-shot", "ran", reason, validation=validation,
                       seconds=round(time.perf_counter() - started, 3), peak_rss_mib=peak_rss_mib(),
                       parameters=model.parameter_counts())
        self.models[row["step"]] = model

    def _measure_forward(self, spec, model, embedded) -> None:
        seconds = sum(s for s, n in embedded if n)
        rows = sum(n for _, n in embedded if n)
        if spec in self.forward_s and not rows:
            return
        if not rows:  # everything came from the feature cache: time a small uncached pass, read as the task reads
            sample = self.train.head(min(len(self.train), 2 * model.batch_size))
            use_cache, model.use_cache = model.use_cache, False
            clock = time.perf_counter()
            try:
                model.features(sample)
            finally:
                model.use_cache = use_cache
            seconds, rows = time.perf_counter() - clock, len(sample)
        self.forward_s[spec] = seconds / rows

    def trainable(self, spec, strategy, reason, estimate, basis, graft_options, epochs, layers, *,
                  train=None, kind: str = "trainable", extra: dict | None = None, cost: dict | None = None,
                  **row_extra) -> dict:
        """A trainable rung on ``train`` (default: every training row; fewer when the budget cut them);
        ``extra``: more strategy settings (a domain rung's ``adapt_to``), ``cost``: what
        ``estimate_trainable`` must count besides the defaults (its measured / estimated correction reads it)."""
        from graftkit.graft import Graft
        from graftkit.strategies.base import get_strategy

        fields = get_strategy(strategy).field_names()
        params = {k: v for k, v in (("epochs", epochs), ("layers", layers if strategy == "finetune" else None))
                  if k in fields and v is not None}
        train = self.train if train is None else train
        params.update(extra or {})
        started = time.perf_counter()
        deadline = self.deadline(spec)
        try:
            model = Graft(backbone=spec, strategy=strategy, **graft_options, **params).fit(
                train, validation=self.val, callbacks=[deadline])
            validation = model.metrics_.get("validation")
            if validation is None:
                validation = self.model_metrics(model, self.val, self.y_val)
            else:
                sign = 1.0 if self.task.greater_is_better else -1.0
                validation = {**validation, "score": sign * validation[self.metric]}
        except GraftkitError as exc:
            return self.row(kind, spec, strategy, "failed", f"{reason}; failed: {exc}",
                            seconds=round(time.perf_counter() - started, 3), estimated_s=round(estimate, 1),
                            **row_extra)
        seconds = round(time.perf_counter() - started, 3)
        raw, _ = estimate_trainable(strategy, forward_s_per_row=self.forward_s[spec], train_rows=len(train),
                                    val_rows=len(self.val), epochs=params.get("epochs", epochs),
                                    **{"feature_rows": self.uncached_rows(train), **(cost or {})})
        stopped = (model.training_ or {}).get("stopped")
        if not stopped:  # a run cut at the budget says nothing about how long the whole one takes
            self.correction = seconds / raw
        parameters = dict((model.training_ or {}).get("parameters") or {})
        reason = f"{reason} ({basis}: estimated {estimate:.0f}s)"
        if stopped:
            reason += (f"; {stopped} (epoch {model.training_['best_epoch']} of {model.training_['epochs_run']} run, "
                       f"best on validation)")
        row = self.row(kind, spec, strategy, "ran", reason,
                       validation=validation, seconds=seconds,
                       estimated_s=round(estimate, 1), peak_rss_mib=peak_rss_mib(), parameters=parameters or None,
                       params=params, stopped_at_budget=bool(stopped), train_rows=len(train), **row_extra)
        self.models[row["step"]] = model
        return row

    def uncached_rows(self, train) -> int:
        """Rows of ``train`` whose pretrained features a trainable step must embed first: none when the probe's
        feature cache holds them, all when the cache is off."""
        if self.feature_rows:
            return len(train)
        if self.first_probe_rows is None:
            return 0
        return int((~train.frame.index.isin(self.first_probe_rows.frame.index)).sum())

    def deadline(self, spec: str):
        """A ``Deadline`` for a trainable step: training ends cleanly when it would eat into what the calibration
        pass over the validation rows, the test scoring and saving still need; until the first evaluation is
        measured, one evaluation is taken to cost an inference pass over the validation rows."""
        from graftkit.training.callbacks import Deadline

        validation_pass = self.forward_s[spec] * len(self.val)
        left = self.clock.remaining(self.reserve()) - validation_pass
        return Deadline(time.monotonic() + left, eval_s=validation_pass)

    def refit_probe(self, row: dict, table, graft_options: dict) -> None:
        """Refit the chosen linear probe on training + validation rows (the choice is made; the probe's features
        of both are cached, so this costs the head's fit), when the budget allows it."""
        from graftkit.graft import Graft

        estimate = row["seconds"] * len(table) / max(row.get("train_rows") or len(self.train), 1)
        fits, note = self.budget_note(estimate)
        if not fits:
            row["refit"] = f"not refitted on training + validation: would not fit the budget ({note})"
            self.log("refit", row["refit"])
            return
        started = time.perf_counter()
        try:
            model = Graft(backbone=row["backbone"], strategy="linear-probe", **graft_options).fit(table)
        except GraftkitError as exc:
            row["refit"] = f"refit on training + validation failed, keeping the fitted model: {exc}"
            self.log("refit", row["refit"])
            return
        self.models[row["step"]] = model
        row["refit"] = (f"refitted on training + validation ({len(table)} rows) in "
                        f"{time.perf_counter() - started:.1f}s after the choice; its test metric is that model's")
        row["reason"] += f"; {row['refit']}"
        self.log("refit", row["refit"])

    def score_test(self, baseline, n_bootstrap: int, seed: int) -> None:
        """Test metrics for every row that ran: only now, after every decision was made."""
        for row in self.rows:
            if row["status"] != "ran":
                continue
            if row["kind"] == "baseline":
                outputs, calibration = baseline.outputs(self.test.items()), None
            else:
                model = self.models[row["step"]]
                outputs, calibration = model.outputs(self.test), model.active_calibration()
            metrics = self.metrics(self.y_test, outputs, calibration)
            metrics["score_std"] = bootstrap_std(self.task, self.y_test, outputs, calibration, n_bootstrap, seed)
            row["test"] = metrics
