"""A tune worker fails the trials of dead workers, including one killed before its first
heartbeat (which Optuna alone never counts as stale), and leaves live trials alone."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from metapredict.tuning import fail_dead_trials, open_storage
from tests.servers import wait_until

GRACE_S = 1
#: Past the grace period, at the one-second resolution of SQLite's clock.
PAST_GRACE_S = GRACE_S + 1.2


@pytest.fixture
def study_and_storage(tmp_path: Path) -> tuple[optuna.Study, RDBStorage]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(f"sqlite:///{tmp_path / 'optuna.db'}", heartbeat_s=1, grace_s=GRACE_S)
    return optuna.create_study(study_name="s", storage=storage), storage


def _trial_id(storage: RDBStorage, number: int) -> int:
    return storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name("s"), number
    )


def _state(study: optuna.Study, number: int) -> TrialState:
    return next(t.state for t in study.get_trials() if t.number == number)


def test_a_trial_without_a_heartbeat_is_failed_and_requeued(
    study_and_storage: tuple[optuna.Study, RDBStorage],
) -> None:
    study, storage = study_and_storage
    orphan = study.ask()  # RUNNING, and no heartbeat: its worker died before the first beat
    # The control started after the orphan and beat once: once Optuna's own stale check has
    # failed it, the older orphan is past the grace period by the same clock.
    control = study.ask()
    storage.record_heartbeat(_trial_id(storage, control.number))

    def control_failed() -> bool:
        optuna.storages.fail_stale_trials(study)
        return _state(study, control.number) == TrialState.FAIL

    wait_until(control_failed, 30 * PAST_GRACE_S, "the control to go stale and fail")
    assert _state(study, orphan.number) == TrialState.RUNNING  # Optuna alone waits for ever

    given: set[int] = set()
    fail_dead_trials(study, storage, given, after_s=0)
    assert given == {orphan.number}
    assert _state(study, orphan.number) == TrialState.RUNNING  # one grace period to beat

    def failed() -> bool:
        fail_dead_trials(study, storage, given, after_s=0)
        return _state(study, orphan.number) == TrialState.FAIL

    wait_until(failed, 30 * PAST_GRACE_S, "the orphan to go stale and fail")
    assert _state(study, orphan.number) == TrialState.FAIL
    retries = study.get_trials(states=(TrialState.WAITING,))
    assert [t.system_attrs.get("failed_trial") for t in retries] == [control.number, orphan.number]


def test_a_young_trial_gets_no_heartbeat_and_a_beating_one_is_not_failed(
    study_and_storage: tuple[optuna.Study, RDBStorage],
) -> None:
    study, storage = study_and_storage
    live = study.ask()
    given: set[int] = set()
    fail_dead_trials(study, storage, given, after_s=3600)  # too young to judge
    assert given == set()

    # The control is given its heartbeat at the same moment as the live trial and never beats
    # again: until it has gone stale and failed, the live trial's worker keeps beating, more
    # often than the grace period (the polls are at most 0.5 s apart).
    control = study.ask()
    fail_dead_trials(study, storage, given, after_s=0)
    assert given == {live.number, control.number}
    trial_id = _trial_id(storage, live.number)

    def control_failed_while_live_beats() -> bool:
        storage.record_heartbeat(trial_id)
        fail_dead_trials(study, storage, given, after_s=0)
        return _state(study, control.number) == TrialState.FAIL

    wait_until(control_failed_while_live_beats, 30 * PAST_GRACE_S, "the control to fail")
    assert _state(study, live.number) == TrialState.RUNNING
