"""SuiteRunner's reuse of compiled lm-eval prompt templates (issue 14, Performance): same output, one compile."""

from __future__ import annotations


def test_templates_compile_once_and_render_as_lm_eval_does(monkeypatch):
    from lm_eval import utils

    from proxy.benchmarks import _reuse_compiled_templates

    _reuse_compiled_templates()
    _reuse_compiled_templates()  # installed once: a second call does not wrap the wrapper
    cached = utils.apply_template
    original = cached.original
    assert not getattr(original, "demix_cached", False)
    compiles = []
    real = utils.env.from_string
    monkeypatch.setattr(utils.env, "from_string", lambda t: (compiles.append(t), real(t))[1])
    template = "Q: {{question}} — {{choices[label]}}"
    docs = [{"question": f"What is {i} × 3?", "choices": [" a", " b", " ü"], "label": i % 3} for i in range(20)]
    got = [cached(template, d) for d in docs]
    assert got == [original(template, d) for d in docs]  # the uncached path, for comparison
    assert compiles.count(template) == 1 + len(docs)  # one compile for all cached renders, one per uncached
    assert got[2] == "Q: What is 2 × 3? —  ü"
