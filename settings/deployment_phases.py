"""The five rollout phases: 0% → early adopters → 10% → 75% → 100%.

``WEBHOOK_DEPLOYMENT_PHASE=N`` applies ``PHASE_N_SETTINGS`` on top of base. Polling stays on for
every calendar outside the rollout, so a phase never leaves a calendar unsynced.
"""

from __future__ import annotations

from settings.env import envlist

# Phase 1: infrastructure live, receivers answering, no calendar on push yet.
PHASE_1_SETTINGS = {
    "WEBHOOKS_ENABLED": True,
    "WEBHOOK_ROLLOUT_PERCENTAGE": 0,
    "WEBHOOK_USER_ROLLOUT_PERCENTAGE": 0,
    "WEBHOOK_EARLY_ADOPTERS": [],
}
# Phase 2: the early adopters (by account email) only.
PHASE_2_SETTINGS = {
    "WEBHOOKS_ENABLED": True,
    "WEBHOOK_ROLLOUT_PERCENTAGE": 0,
    "WEBHOOK_USER_ROLLOUT_PERCENTAGE": 0,
    "WEBHOOK_EARLY_ADOPTERS": [e.lower() for e in envlist("WEBHOOK_EARLY_ADOPTERS", [])],
}
# Phase 3: 10 % of users (stable buckets) plus the early adopters.
PHASE_3_SETTINGS = {**PHASE_2_SETTINGS, "WEBHOOK_ROLLOUT_PERCENTAGE": 100,
                    "WEBHOOK_USER_ROLLOUT_PERCENTAGE": 10}
# Phase 4: 75 % of users.
PHASE_4_SETTINGS = {**PHASE_3_SETTINGS, "WEBHOOK_USER_ROLLOUT_PERCENTAGE": 75}
# Phase 5: everyone.
PHASE_5_SETTINGS = {**PHASE_4_SETTINGS, "WEBHOOK_USER_ROLLOUT_PERCENTAGE": 100}

PHASES = {
    1: PHASE_1_SETTINGS,
    2: PHASE_2_SETTINGS,
    3: PHASE_3_SETTINGS,
    4: PHASE_4_SETTINGS,
    5: PHASE_5_SETTINGS,
}


def phase_settings(phase: int) -> dict:
    return dict(PHASES[phase])
