"""The learning loop as the nightly runs it: one configuration of each step, read by the tasks that compute
and store, and by the commands and reports that read back what was stored under these digests."""

from __future__ import annotations

from neuraltrade.learning.counterfactual import CounterfactualConfig
from neuraltrade.learning.episodes import EpisodeConfig
from neuraltrade.learning.judge import JudgeConfig
from neuraltrade.learning.patterns import DistillationConfig
from neuraltrade.learning.reflexion import ReflexionConfig
from neuraltrade.memory.embedding import WindowEmbedderConfig

#: The collection of the vector memory that holds every critique, embedded by its episode's entry state.
REFLECTIONS_COLLECTION = "reflections"
#: The market-state embedder of the nightly (`flows.embed_observations`), whose vectors the episodes carry.
EMBEDDER = WindowEmbedderConfig(window=32, dimension=512)
EPISODE_CONFIG = EpisodeConfig()
#: The judge looks as far ahead as the episode's own window, which has closed when the episode is built.
JUDGE_CONFIG = JudgeConfig(horizon_bars=EPISODE_CONFIG.horizon_bars)
REFLEXION_CONFIG = ReflexionConfig()
DISTILLATION_CONFIG = DistillationConfig()
COUNTERFACTUAL_CONFIG = CounterfactualConfig()
#: Months between two distillation checkpoints of a strategy's history.
CHECKPOINT_MONTHS = 3
