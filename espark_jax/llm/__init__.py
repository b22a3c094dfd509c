"""The LLM-facing half of the eSpark loop.

* :mod:`espark_jax.llm.prompts` - the generator, checker and repair prompts;
  :mod:`espark_jax.llm.prompt_text` finds and fills the template files (``prompts/``) and
  :class:`~espark_jax.llm.env_info.EnvPromptInfo` describes a scenario for them.
* :mod:`espark_jax.llm.extract` - candidate code and checker verdicts out of raw replies.
* :mod:`espark_jax.llm.providers` - :func:`~espark_jax.llm.providers.make_provider`, the one
  door to the ``anthropic`` (:mod:`~espark_jax.llm.anthropic_provider`) and the ``replay`` /
  ``template`` (:mod:`~espark_jax.llm.offline`) providers; :mod:`espark_jax.llm.base` holds
  their contract and :mod:`espark_jax.llm.recording` the run-record format and recording wrapper.
* :mod:`espark_jax.llm.templates` (+ ``templates_mabim``, ``templates_sumo``) - parametric mask
  templates and the evolutionary search of the template provider (the "w/o LLM" ablation).

Nothing is imported here, so ``import espark_jax.llm`` needs neither the SDK nor JAX.
"""
