"""The LLM-facing half of the eSpark loop.

* :mod:`espark_jax.llm.prompts` - prompt templates (``prompts/``) filled per environment, iteration
  and slot; :class:`~espark_jax.llm.prompts.EnvPromptInfo` describes a scenario for them.
* :mod:`espark_jax.llm.extract` - candidate code and checker verdicts out of raw replies.
* :mod:`espark_jax.llm.providers` - ``anthropic`` | ``replay`` | ``template`` providers,
  :func:`~espark_jax.llm.providers.make_provider` and the run-record format.
* :mod:`espark_jax.llm.templates` (+ ``templates_mabim``, ``templates_sumo``) - parametric mask
  templates and the evolutionary search of the template provider (the "w/o LLM" ablation).

Nothing is imported here, so ``import espark_jax.llm`` needs neither the SDK nor JAX.
"""
