"""The migration decision: one DatabaseMigration and its Jobs and pods in, a plan out. No I/O.

migration_reconciler.py observes and acts on the plan.

Level-triggered: the plan depends only on what is observed now, so running it
twice, or after an operator restart, gives the same answer. Job names are
deterministic, so a create that races another lands on AlreadyExists and the
existing Job is adopted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pydantic

from migrategate.api import constants as c
from migrategate.api.models import (
    DatabaseMigrationSpec,
    JobSpec,
    Phase,
    PhaseState,
)
from migrategate.controller import approval, backoff, expand_contract, jobs, naming
from migrategate.controller.expand_contract import phase_entry
from migrategate.controller.facts import JobFacts, PodFacts, parse_time
from migrategate.controller.outcome import (
    DEFAULT_IMAGE_PULL_GRACE,
    Kind,
    Verdict,
    classify,
    config_error_hint,
)
from migrategate.controller.redaction import clean
from migrategate.controller.rollout import RolloutFacts, rollout_progress
from migrategate.controller.status import Standing, conditions
from migrategate.runner.contract import ResultKey


@dataclass(frozen=True)
class Observed:
    """What the operator sees of one DatabaseMigration."""

    body: Mapping[str, Any]  # the DatabaseMigration as the API returned it
    jobs: Sequence[JobFacts]
    pods: Sequence[PodFacts]
    now: datetime
    # Read only when the decision asks for them (Plan.needs_rollout): between the phases.
    rollout: RolloutFacts | None = None


@dataclass(frozen=True)
class Config:
    runner_image: str
    runner_image_pull_policy: str = "IfNotPresent"
    message_max_chars: int = 1024
    job_defaults: JobSpec | None = None  # merged under each spec.job; not part of the hash
    # A failing image pull counts as permanent once it has lasted this long.
    image_pull_grace_seconds: float = DEFAULT_IMAGE_PULL_GRACE


@dataclass
class Plan:
    status: dict[str, Any]
    create: dict[str, Any] | None = None  # a Job to create
    delete: list[str] = field(default_factory=list)  # Job names to delete
    requeue_after: float | None = None  # seconds until the next retry is due
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)
    finished: tuple[str, float | None] | None = None  # (outcome, duration) newly reached
    # Decide again with Observed.rollout: the expand phase is done, the contract phase waits.
    needs_rollout: bool = False
    # Waiting for the rollout: pod and Deployment events should reconcile again.
    watch_rollout: bool = False


# Plan and migration Jobs of one content, after which a plan that keeps going stale stalls.
MAX_GATED_ATTEMPTS = 10


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def decide(obs: Observed, cfg: Config) -> Plan:
    meta = obs.body.get("metadata") or {}
    previous = dict(obs.body.get("status") or {})
    try:
        spec = DatabaseMigrationSpec.model_validate(obs.body.get("spec") or {})
    except pydantic.ValidationError as e:
        msg = clean(str(e), cfg.message_max_chars)
        state = Standing(Phase.FAILED, "InvalidSpec", msg, stalled=True)
        return _finish(obs, cfg, previous, {}, state, None)
    rerun = (meta.get("annotations") or {}).get(c.ANNOTATION_RERUN)
    chash = naming.content_hash(spec, rerun)
    ctx = _Context(obs, cfg, spec, chash, previous)
    return ctx.plan()


@dataclass
class _Context:
    obs: Observed
    cfg: Config
    spec: DatabaseMigrationSpec
    chash: str
    previous: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.obs.body["metadata"]["name"])

    def plan(self) -> Plan:
        mine = [j for j in self.obs.jobs if j.content_hash == self.chash and not j.deleting]
        latest = max((j for j in mine if not j.contract), key=lambda j: j.attempt, default=None)
        if latest is None:
            plan = self._no_job()
        elif _superseded(latest, self.obs.jobs):
            # Back to an earlier content (a rollback): its old result no longer describes
            # the database, which a newer Job has migrated since. Run it again.
            plan = self._start_when_free(latest.attempt + 1)
        else:
            pods = [p for p in self.obs.pods if p.job_name == latest.name]
            verdict = classify(latest, pods, self.obs.now, self.cfg.image_pull_grace_seconds)
            after = self._after_plan if latest.plan else self._after
            plan = after(latest, verdict)
        kept = {j.name for j in (latest, self._latest_contract()) if j is not None}
        plan.delete += _history(self.obs.jobs, kept, self.spec.history_limit, plan.delete)
        return plan

    def _latest_contract(self) -> JobFacts | None:
        """This content's latest contract Job, unless an expand Job of it ran again since.

        A rollback to this content reruns its expand Job: a contract Job from before that
        describes a database that newer images have moved on from.
        """
        mine = [j for j in self.obs.jobs if j.content_hash == self.chash and not j.deleting]
        expands = [j.created for j in mine if not j.contract and not j.plan]
        since = max(expands, default="")
        return max(
            (j for j in mine if j.contract and j.created >= since),
            key=lambda j: j.attempt,
            default=None,
        )

    def _base(self) -> dict[str, Any]:
        base: dict[str, Any] = {"contentHash": self.chash, "image": self.spec.image}
        # The Job the status tracked before the spec changed may have succeeded since:
        # its image is migrated, and the gate must know.
        tracked = self.previous.get("jobName")
        unrecorded = self.previous.get("phase") != Phase.SUCCEEDED.value
        for job in self.obs.jobs:
            other = job.name == tracked and job.content_hash != self.chash
            expand = not job.plan and not job.contract
            if other and job.succeeded and job.image and unrecorded and expand:
                base["migratedImage"] = job.image
        return base

    def _no_job(self) -> Plan:
        prev = self.previous
        done = prev.get("phase") in (Phase.SUCCEEDED.value, Phase.FAILED.value)
        if prev.get("contentHash") == self.chash and _expanded(prev):
            # The expand Job is gone (TTL, history): status.phases remembers it.
            fields = {**self._base(), "migratedImage": self.spec.image, "phases": prev["phases"]}
            return self._contract_stage(fields, None)
        if prev.get("contentHash") == self.chash and done:
            # Its Job is gone (TTL, history, or removed when stuck): the status stands.
            state = _standing_of(prev)
            return _finish(self.obs, self.cfg, prev, {}, state, None)
        return self._start_when_free(1)

    def _start_when_free(self, attempt: int) -> Plan:
        """Start `attempt`, unless a Job of another content still runs: one at a time."""
        busy = [j for j in self.obs.jobs if j.active and j.content_hash != self.chash]
        if busy:
            msg = f"waiting for Job {busy[0].name} of the previous spec to finish"
            state = Standing(Phase.PENDING, "WaitingForPreviousJob", msg, reconciling=True)
            return _finish(self.obs, self.cfg, self.previous, self._base(), state, None)
        return self._begin(attempt)

    @property
    def gated(self) -> bool:
        """spec.approval asks for a plan before each migration."""
        return self.spec.approval.policy != "Auto"

    @property
    def namespace(self) -> str:
        return str(self.obs.body["metadata"]["namespace"])

    def _begin(self, attempt: int, note: str = "") -> Plan:
        """A plan Job first when spec.approval asks for one, else the migration Job."""
        return self._start_plan(attempt, note) if self.gated else self._start(attempt, note)

    def _suspended(self, note: str) -> Plan | None:
        if not self.spec.suspend:
            return None
        msg = "suspended: no new Job is started" + (f"; {note}" if note else "")
        state = Standing(Phase.PENDING, "Suspended", msg)
        return _finish(self.obs, self.cfg, self.previous, self._base(), state, None)

    def _request(
        self,
        name: str,
        attempt: int,
        plan: bool = False,
        plan_hash: str | None = None,
        contract: bool = False,
    ) -> jobs.JobRequest:
        meta = self.obs.body["metadata"]
        return jobs.JobRequest(
            owner=jobs.Owner(meta["name"], meta["namespace"], meta["uid"]),
            spec=jobs.with_job_defaults(self.spec, self.cfg.job_defaults),
            job_name=name,
            content_hash=self.chash,
            attempt=attempt,
            runner_image=self.cfg.runner_image,
            runner_image_pull_policy=self.cfg.runner_image_pull_policy,
            plan=plan,
            plan_hash=plan_hash,
            contract=contract,
        )

    def _start_plan(self, attempt: int, note: str = "") -> Plan:
        """A plan Job: render, lint and hash the pending SQL; the migration waits for it."""
        held = self._suspended(note)
        if held is not None:
            return held
        name = naming.job_name(self.name, self.chash, attempt, kind=c.JOB_KIND_PLAN)
        fields = {
            **self._base(),
            "attempts": attempt,
            "phases": None,  # a new content starts over with its expand phase
            "plan": approval.plan_status(None, self.namespace, name, self.chash),
        }
        msg = f"plan Job {name} renders and lints the pending SQL (attempt {attempt})"
        state = Standing(Phase.RUNNING, "Planning", msg, reconciling=True)
        plan = _finish(self.obs, self.cfg, self.previous, fields, state, None)
        plan.create = jobs.build_job(self._request(name, attempt, plan=True))
        plan.events = [("Normal", "PlanJobCreated", plan.status["message"])]
        return plan

    def _start(
        self,
        attempt: int,
        note: str = "",
        plan_hash: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Plan:
        held = self._suspended(note)
        if held is not None:
            return held
        name = naming.job_name(self.name, self.chash, attempt)
        req = self._request(name, attempt, plan_hash=plan_hash)
        fields = {
            **self._base(),
            **(extra or {}),
            "attempts": attempt,
            **_new_attempt(name, self.obs.now),
            "phases": None,  # known again from this Job's result
        }
        state = Standing(Phase.RUNNING, "JobRunning", _running(name, attempt), reconciling=True)
        plan = _finish(self.obs, self.cfg, self.previous, fields, state, None)
        plan.create = jobs.build_job(req)
        plan.events = [("Normal", "JobCreated", plan.status["message"])]
        return plan

    def _after(self, job: JobFacts, verdict: Verdict) -> Plan:
        fields = {**self._base(), "jobName": job.name, "attempts": job.attempt}
        fields.update(_result_fields(verdict))
        limit = self.cfg.message_max_chars
        if verdict.kind is Kind.RUNNING:
            msg = _running(job.name, job.attempt)
            if verdict.recheck_after is not None:  # an image pull fails, for now
                due = self.obs.now + timedelta(seconds=verdict.recheck_after)
                msg += (
                    f"; {verdict.reason}: {verdict.message}; "
                    f"the attempt fails at {iso(due)} unless the image can be pulled by then"
                )
            state = Standing(Phase.RUNNING, "JobRunning", msg, reconciling=True)
            plan = _finish(self.obs, self.cfg, self.previous, fields, state, None)
            plan.requeue_after = verdict.recheck_after
            return plan
        rollback = expand_contract.past_contract(
            self.previous.get("contracted"), self.spec.image, verdict.result
        )
        if verdict.kind is Kind.SUCCEEDED:
            fields["migratedImage"] = self.spec.image
            split = expand_contract.split_of(verdict.result)
            if split is not None:
                fields["phases"] = {
                    "expand": phase_entry(
                        PhaseState.SUCCEEDED,
                        job.name,
                        split.expand_heads,
                        expand_contract.applied_of(verdict.result),
                        verdict.finished_at,
                    ),
                    "contract": phase_entry(PhaseState.PENDING, targets=split.contract_heads),
                }
                return self._contract_stage(fields, verdict)
            message = _success_message(verdict) + (f"; {rollback}" if rollback else "")
            state = Standing(Phase.SUCCEEDED, "Succeeded", message, ready=True)
            return _warn_rollback(
                _finish(self.obs, self.cfg, self.previous, fields, state, verdict), rollback
            )
        detail = clean(f"{verdict.reason}: {verdict.message}", limit)
        if rollback:
            detail = clean(f"{rollback}; {detail}", limit)
        stale = approval.stale_refusal(verdict.result) and job.attempt < MAX_GATED_ATTEMPTS
        if verdict.kind is Kind.PERMANENT and stale:
            # The database moved on or the image changed since the plan: plan again.
            plan = self._begin(job.attempt + 1, note=detail)
            plan.events.insert(0, ("Warning", "StalePlan", f"{detail}; planning again"))
            return plan
        if verdict.kind is Kind.PERMANENT:
            plan = _warn_rollback(self._stalled(fields, verdict, detail), rollback)
            if job.active:  # stuck pod: remove it, so fixing the cause runs nothing unseen
                plan.delete.append(job.name)
            return plan
        return self._transient(job, verdict, fields, detail)

    def _contract_stage(self, fields: dict[str, Any], expand: Verdict | None) -> Plan:
        """Expand is done and the pods released: wait for the rollout, then contract."""
        latest = self._latest_contract()
        if latest is not None:
            pods = [p for p in self.obs.pods if p.job_name == latest.name]
            verdict = classify(latest, pods, self.obs.now, self.cfg.image_pull_grace_seconds)
            return self._after_contract(latest, verdict, fields)
        before = (self.previous.get("phases") or {}).get("contract") or {}
        ended = before.get("state") in (PhaseState.SUCCEEDED.value, PhaseState.FAILED.value)
        if self.previous.get("contentHash") == self.chash and ended:
            # Its contract Job is gone (TTL, history): the status stands.
            state = _standing_of(self.previous)
            return _finish(self.obs, self.cfg, self.previous, {}, state, None)
        if self.obs.rollout is None:
            return Plan(status=dict(self.previous), needs_rollout=True)
        progress = rollout_progress(self.spec.image, self.name, self.obs.rollout)
        contract = fields["phases"]["contract"]
        heads = fields["phases"]["expand"].get("targetRevisions") or []
        expanded = f"expand phase done ({', '.join(heads)})"
        if not progress.done:
            fields["phases"]["contract"] = {
                **contract,
                "state": PhaseState.WAITING_FOR_ROLLOUT.value,
                "message": progress.message,
            }
            msg = f"{expanded}; contract phase {progress.message}"
            state = Standing(Phase.RUNNING, c.REASON_WAITING_FOR_ROLLOUT, msg, reconciling=True)
            plan = _finish(self.obs, self.cfg, self.previous, fields, state, expand)
            plan.watch_rollout = True
            return plan
        manual = self.spec.contract.policy == "Manual"
        annotations = (self.obs.body.get("metadata") or {}).get("annotations")
        if manual and expand_contract.contract_approval(annotations) != self.chash:
            command = expand_contract.approve_contract_command(
                self.namespace, self.name, self.chash
            )
            fields["phases"]["contract"] = {
                **contract,
                "state": PhaseState.AWAITING_APPROVAL.value,
                "message": progress.message,
            }
            msg = f"{expanded}; {progress.message}; the contract phase waits for: {command}"
            reason = c.REASON_AWAITING_CONTRACT_APPROVAL
            state = Standing(Phase.AWAITING_APPROVAL, reason, msg)
            return _finish(self.obs, self.cfg, self.previous, fields, state, expand)
        # Past every contract Job of this content, counted or not: Job names must not repeat.
        before = [j.attempt for j in self.obs.jobs if j.contract and j.content_hash == self.chash]
        return self._start_contract(max(before, default=0) + 1, fields)

    def _start_contract(self, attempt: int, fields: dict[str, Any], note: str = "") -> Plan:
        held = self._suspended(note)
        if held is not None:
            return held
        name = naming.job_name(self.name, self.chash, attempt, kind=c.JOB_KIND_CONTRACT)
        contract = fields["phases"]["contract"]
        fields["phases"]["contract"] = phase_entry(
            PhaseState.RUNNING, name, contract.get("targetRevisions")
        )
        fields.update(_new_attempt(name, self.obs.now))
        msg = f"contract Job {name} is running (attempt {attempt}): the rollout has finished"
        state = Standing(Phase.RUNNING, c.REASON_CONTRACT_RUNNING, msg, reconciling=True)
        plan = _finish(self.obs, self.cfg, self.previous, fields, state, None)
        plan.create = jobs.build_job(self._request(name, attempt, contract=True))
        plan.events = [("Normal", "ContractJobCreated", plan.status["message"])]
        return plan

    def _after_contract(self, job: JobFacts, verdict: Verdict, fields: dict[str, Any]) -> Plan:
        """The contract Job of this content: running, done, failed or to retry."""
        fields = {**fields, "jobName": job.name, **_result_fields(verdict)}
        contract = fields["phases"]["contract"]
        targets = contract.get("targetRevisions")
        if verdict.kind is Kind.RUNNING:
            fields["phases"]["contract"] = phase_entry(PhaseState.RUNNING, job.name, targets)
            msg = f"contract Job {job.name} is running (attempt {job.attempt})"
            if verdict.recheck_after is not None:
                msg += f"; {verdict.reason}: {verdict.message}"
            state = Standing(Phase.RUNNING, c.REASON_CONTRACT_RUNNING, msg, reconciling=True)
            plan = _finish(self.obs, self.cfg, self.previous, fields, state, None)
            plan.requeue_after = verdict.recheck_after
            return plan
        applied = expand_contract.applied_of(verdict.result)
        if verdict.kind is Kind.SUCCEEDED:
            fields["phases"]["contract"] = phase_entry(
                PhaseState.SUCCEEDED, job.name, targets, applied, verdict.finished_at
            )
            fields["contracted"] = {
                "image": self.spec.image,
                "revisions": list(targets or []),
                "finishedAt": verdict.finished_at,
            }
            expanded = fields["phases"]["expand"].get("targetRevisions") or []
            msg = (
                f"expand ({', '.join(expanded)}) and contract ({', '.join(targets or [])})"
                f" done; {_success_message(verdict)}"
            )
            state = Standing(Phase.SUCCEEDED, "Succeeded", msg, ready=True)
            return _finish(self.obs, self.cfg, self.previous, fields, state, verdict)
        limit = self.cfg.message_max_chars
        detail = clean(f"contract phase: {verdict.reason}: {verdict.message}", limit)
        if verdict.kind is Kind.PERMANENT:
            fields["phases"]["contract"] = phase_entry(
                PhaseState.FAILED, job.name, targets, applied, verdict.finished_at, detail
            )
            kept = f"{detail}; the new pods keep serving on the expanded schema"
            plan = self._stalled(fields, verdict, clean(kept, limit))
            if job.active:
                plan.delete.append(job.name)
            return plan
        fields["phases"]["contract"] = phase_entry(
            PhaseState.PENDING, job.name, targets, message=detail
        )
        return self._transient(job, verdict, fields, detail)

    def _stalled(self, fields: dict[str, Any], verdict: Verdict, detail: str) -> Plan:
        if verdict.reason == "CreateContainerConfigError":
            ref = self.spec.database_url.secret_key_ref
            hint = config_error_hint(verdict.message, ref.name, ref.key)
            detail = clean(f"{verdict.reason}: {verdict.message}{hint}", self.cfg.message_max_chars)
        state = Standing(Phase.FAILED, verdict.reason, detail, stalled=True)
        return _finish(self.obs, self.cfg, self.previous, fields, state, verdict)

    def _transient(
        self, job: JobFacts, verdict: Verdict, fields: dict[str, Any], detail: str
    ) -> Plan:
        retry = self.spec.retry
        if self._tries(job) > retry.limit:
            msg = clean(f"gave up after {job.attempt} attempts; last: {detail}", 10**6)
            state = Standing(Phase.FAILED, "RetriesExhausted", msg, stalled=True)
            return _finish(self.obs, self.cfg, self.previous, fields, state, verdict)
        ended = parse_time(verdict.finished_at or job.finish_time) or parse_time(job.created)
        wait = backoff.delay(job.attempt, retry.backoff_seconds, retry.max_backoff_seconds, job.uid)
        due = (ended or self.obs.now) + timedelta(seconds=wait)
        if self.obs.now >= due:
            if job.plan:
                return self._start_plan(job.attempt + 1, note=detail)
            if job.contract:
                return self._start_contract(job.attempt + 1, fields, note=detail)
            return self._start(job.attempt + 1, note=detail, plan_hash=job.plan_hash)
        fields["nextAttemptAt"] = iso(due)
        msg = f"attempt {job.attempt} failed ({detail}); retrying at {iso(due)}"
        state = Standing(Phase.PENDING, "Retrying", clean(msg, 10**6), reconciling=True)
        plan = _finish(self.obs, self.cfg, self.previous, fields, state, None)
        plan.requeue_after = (due - self.obs.now).total_seconds()
        return plan

    def _tries(self, job: JobFacts) -> int:
        """Attempts of this Job's kind so far; plan and migration Jobs share the numbering."""
        if job.contract or (not self.gated and not job.plan):
            return job.attempt  # contract Jobs count their own attempts
        return sum(
            1
            for j in self.obs.jobs
            if j.content_hash == self.chash and j.plan == job.plan and j.attempt <= job.attempt
        )

    def _after_plan(self, job: JobFacts, verdict: Verdict) -> Plan:
        """The plan Job of this content: wait for it, then migrate, or wait for approval."""
        res = verdict.result if verdict.kind is Kind.SUCCEEDED else None
        plan_fields = approval.plan_status(res, self.namespace, job.name, self.chash)
        fields: dict[str, Any] = {**self._base(), "attempts": job.attempt, "plan": plan_fields}
        limit = self.cfg.message_max_chars
        if verdict.kind is Kind.RUNNING:
            msg = f"plan Job {job.name} renders and lints the pending SQL (attempt {job.attempt})"
            if verdict.recheck_after is not None:
                due = self.obs.now + timedelta(seconds=verdict.recheck_after)
                msg += f"; {verdict.reason}: {verdict.message}; it fails at {iso(due)}"
            state = Standing(Phase.RUNNING, "Planning", msg, reconciling=True)
            plan = _finish(self.obs, self.cfg, self.previous, fields, state, None)
            plan.requeue_after = verdict.recheck_after
            return plan
        if verdict.kind is Kind.PERMANENT:
            detail = clean(
                f"plan Job {job.name} failed: {verdict.reason}: {verdict.message}", limit
            )
            plan = self._stalled(fields, verdict, detail)
            if job.active:
                plan.delete.append(job.name)
            return plan
        if verdict.kind is Kind.TRANSIENT:
            detail = clean(f"plan {verdict.reason}: {verdict.message}", limit)
            return self._transient(job, verdict, fields, detail)
        phash = approval.plan_hash(res)
        why = approval.why_approval(self.spec.approval, res)
        if why is None or phash is None:
            plan_fields["needsApproval"] = False
            return self._start(job.attempt + 1, plan_hash=phash, extra={"plan": plan_fields})
        plan_fields["needsApproval"] = True
        annotations = (self.obs.body.get("metadata") or {}).get("annotations")
        approved = approval.approval_of(annotations)
        if approved == phash:
            plan_fields["approved"] = True
            plan = self._start(job.attempt + 1, plan_hash=phash, extra={"plan": plan_fields})
            plan.events.insert(0, ("Normal", "Approved", f"plan {phash} approved; migrating"))
            return plan
        plan_fields["approved"] = False
        msg = approval.awaiting_message(self.namespace, self.name, job.name, phash, why)
        state = Standing(Phase.AWAITING_APPROVAL, c.REASON_AWAITING_APPROVAL, msg)
        plan = _finish(self.obs, self.cfg, self.previous, fields, state, None)
        if approved is not None and approved != self.previous.get("ignoredApproval"):
            plan.status["ignoredApproval"] = approved
            plan.events.append(
                ("Warning", "ApprovalIgnored", approval.ignored_message(approved, phash))
            )
        return plan


def _new_attempt(job_name: str, now: datetime) -> dict[str, Any]:
    """Status fields of a Job just created: the last attempt's details no longer describe it."""
    return {
        "jobName": job_name,
        "startedAt": iso(now),
        "nextAttemptAt": None,
        "finishedAt": None,
        "durationSeconds": None,
        "appliedRevisions": None,
        "warnings": None,
    }


def _expanded(status: Mapping[str, Any]) -> bool:
    """status.phases says the expand phase of its content succeeded."""
    expand = (status.get("phases") or {}).get("expand") or {}
    return bool(expand.get("state") == PhaseState.SUCCEEDED.value)


def _warn_rollback(plan: Plan, rollback: str | None) -> Plan:
    """A Warning Event beside the transition's own, once (only a transition has Events)."""
    if rollback and plan.events:
        plan.events.append(("Warning", "RollbackPastContract", rollback))
    return plan


def _superseded(job: JobFacts, all_jobs: Sequence[JobFacts]) -> bool:
    """True when a Job of another content was created after this finished one."""
    return not job.active and any(
        other.content_hash != job.content_hash
        and not other.deleting
        and other.created > job.created
        for other in all_jobs
    )


def _running(job_name: str, attempt: int) -> str:
    return f"Job {job_name} is running (attempt {attempt})"


def _result_fields(verdict: Verdict) -> dict[str, Any]:
    """Status fields copied from the runner's result and the attempt's times."""
    out: dict[str, Any] = {}
    if verdict.started_at:
        out["startedAt"] = verdict.started_at
    if verdict.kind is Kind.RUNNING:
        return out
    out["finishedAt"] = verdict.finished_at
    # A transient failure may never have reached the database: its revisions say nothing.
    res = verdict.result if verdict.kind is not Kind.TRANSIENT else None
    res = res or {}
    current = res.get(ResultKey.TO_REVISIONS) or res.get(ResultKey.FROM_REVISIONS)
    if current is not None:
        out["currentRevision"] = list(current)
    for key, src in (
        ("targetRevision", ResultKey.TARGET_REVISIONS),
        ("appliedRevisions", ResultKey.APPLIED_REVISIONS),
        ("warnings", ResultKey.WARNINGS),
    ):
        if res.get(src) is not None:
            out[key] = [str(v) for v in res[src]]
    if isinstance(res.get(ResultKey.DURATION_SECONDS), int | float):
        out["durationSeconds"] = round(float(res[ResultKey.DURATION_SECONDS]), 3)
    return out


def _success_message(verdict: Verdict) -> str:
    res = verdict.result or {}
    applied = res.get(ResultKey.APPLIED_REVISIONS) or []
    heads = ", ".join(res.get(ResultKey.TO_REVISIONS) or []) or "unknown"
    text = f"at {heads}; applied {len(applied)} revision(s)"
    for warning in res.get(ResultKey.WARNINGS) or []:
        text += f"; warning: {warning}"
    return text


def _standing_of(prev: Mapping[str, Any]) -> Standing:
    ready: Mapping[str, Any] = next(
        (x for x in prev.get("conditions") or [] if x.get("type") == c.CONDITION_READY), {}
    )
    phase = Phase(prev["phase"])
    return Standing(
        phase,
        ready.get("reason") or phase.value,
        prev.get("message") or "",
        ready=phase is Phase.SUCCEEDED,
        stalled=phase is Phase.FAILED,
    )


def _finish(
    obs: Observed,
    cfg: Config,
    previous: Mapping[str, Any],
    fields: Mapping[str, Any],
    state: Standing,
    verdict: Verdict | None,
) -> Plan:
    """The full new status, the Event of a transition, and the metric of an outcome."""
    meta = obs.body.get("metadata") or {}
    generation = meta.get("generation")
    message = clean(state.message, cfg.message_max_chars)
    state = Standing(
        state.phase, state.reason, message, state.ready, state.reconciling, state.stalled
    )
    status = {k: v for k, v in previous.items() if k != "conditions"}
    status.update(fields)
    status.update(
        {
            "observedGeneration": generation,
            "phase": state.phase.value,
            "message": message,
            "conditions": conditions(state, generation, previous.get("conditions"), iso(obs.now)),
        }
    )
    status = {k: v for k, v in status.items() if v is not None}
    plan = Plan(status=status)
    moved = (previous.get("phase"), _reason(previous), previous.get("jobName")) != (
        state.phase.value,
        state.reason,
        status.get("jobName"),
    )
    if moved:
        kind = "Warning" if state.stalled or state.reason == "Retrying" else "Normal"
        plan.events.append((kind, state.reason, message))
        if verdict is not None and verdict.kind is not Kind.RUNNING:
            plan.finished = (verdict.kind.value, status.get("durationSeconds"))
    return plan


def _reason(status: Mapping[str, Any]) -> str | None:
    for cond in status.get("conditions") or []:
        if cond.get("type") == c.CONDITION_READY:
            reason = cond.get("reason")
            return None if reason is None else str(reason)
    return None


def _history(
    all_jobs: Sequence[JobFacts], kept: set[str], keep: int, doomed: list[str]
) -> list[str]:
    """Finished Jobs beyond the newest `keep`; never `kept` (this content's latest attempts)."""
    finished = [j for j in all_jobs if not j.active and not j.deleting]
    finished.sort(key=lambda j: (j.created, j.attempt), reverse=True)
    out = []
    for index, job in enumerate(finished):
        if index >= keep and job.name not in kept and job.name not in doomed:
            out.append(job.name)
    return out
