"""Chat with the artifact edgekit built: `python examples/chat/chat.py out/smollm2-int4 [ARTIFACT]`.
One user message per stdin line; replies greedily on the artifact's own runtime, ONNX Runtime
GenAI or OpenVINO GenAI (the model's chat template when its tokenizer has one, the raw text otherwise)."""
import json
import sys
from pathlib import Path

out, RUNTIMES = Path(sys.argv[1]), ("onnxruntime-genai", "openvino-genai")
arts = {a["name"]: a for a in json.loads((out / "manifest.json").read_text())["artifacts"]
        if set(RUNTIMES) & set(a["runs_on"])}
if len(sys.argv) > 2 and sys.argv[2] not in arts:
    sys.exit(f"{out}: no artifact {sys.argv[2]!r} runs on {' or '.join(RUNTIMES)}; allowed: {', '.join(arts)}")
art = arts[sys.argv[2]] if len(sys.argv) > 2 else min(arts.values(), key=lambda a: a["bytes"])  # the smallest
folder = (out / art["path"]).parent
if "openvino-genai" in art["runs_on"]:
    import openvino_genai as ov_genai

    backend = art["runtime_options"].get("openvino-genai", {}).get("attention_backend")  # as edgekit verified it
    pipe = ov_genai.LLMPipeline(str(folder), "CPU", **({"ATTENTION_BACKEND": backend.upper()} if backend else {}))
    config = ov_genai.GenerationConfig()
    config.max_new_tokens, config.apply_chat_template = 128, bool(pipe.get_tokenizer().chat_template)
    reply = lambda text: pipe.generate(text, config)  # noqa: E731
else:
    import onnxruntime_genai as og

    model = og.Model(str(folder))
    tokenizer, params = og.Tokenizer(model), og.GeneratorParams(model)
    context = json.loads((folder / "genai_config.json").read_text())["model"]["context_length"]
    params.set_search_options(max_length=min(512, context), do_sample=False)

    def reply(text):
        try:
            text = tokenizer.apply_chat_template(json.dumps([{"role": "user", "content": text}]))
        except Exception:  # no chat template in this tokenizer
            pass
        ids, generator = tokenizer.encode(text), og.Generator(model, params)
        generator.append_tokens(ids)
        while not generator.is_done():
            generator.generate_next_token()
        return tokenizer.decode(generator.get_sequence(0)[len(ids):])
for line in sys.stdin:
    print(reply(line.strip()), flush=True)
