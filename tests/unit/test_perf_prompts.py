"""kit.perf.prompts: the load tests' prompts, deterministic and chat-formatted like the pipeline's."""

from kit.perf.prompts import default_prompts, raw_prompts


def test_default_prompts_without_a_tokenizer_use_llama3_format():
    """Without a tokenizer the prompts carry Llama-3's chat headers, deterministic and varied."""
    prompts = default_prompts(20)
    assert len(prompts) == 20
    assert prompts == default_prompts(20)
    assert len(set(prompts[:16])) == 16
    for prompt in prompts:
        assert prompt.startswith("<|start_header_id|>user<|end_header_id|>\n\n")
        assert prompt.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")


def test_default_prompts_apply_the_models_template(tiny_model):
    """With the model's folder the prompts are exactly what the pipeline's formatter produces."""
    from kit.pipeline import PipelineRequest, PromptFormatter

    prompts = default_prompts(3, tokenizer_path=tiny_model)
    formatter = PromptFormatter.load(str(tiny_model))
    expected = [formatter.format(PipelineRequest(prompt=q, stream=True, sampling={"max_tokens": 1}))
                for q in raw_prompts(3)]
    assert prompts == expected
    assert all("<|start_header_id|>assistant<|end_header_id|>" in p for p in prompts)
