"""Layer 4 (beside `data`): RIM, the judge-ensemble reward system (two tiers with escalation, several backends on
the clients of `atlas.llm`, one reply cache, cost accounting, RewardBench 2, session-level evaluation).

Light to import: no backend client (google-genai, httpx, torch) is imported until a backend is used.
"""

from atlas.rim.config import RIMConfig, load_rim_config
from atlas.rim.judges import JudgeSpec
from atlas.rim.reward import RIMReward

__all__ = ["JudgeSpec", "RIMConfig", "RIMReward", "load_rim_config"]
