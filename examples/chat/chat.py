"""Chat with the artifact edgekit built: `python examples/chat/chat.py out/smollm2-int4 [ARTIFACT]`.
One user message per stdin line; replies greedily on ONNX Runtime GenAI (the model's chat
template when its tokenizer has one, the raw text otherwise)."""
import json
import sys
from pathlib import Path

import onnxruntime_genai as og

out = Path(sys.argv[1])
arts = {a["name"]: a for a in json.loads((out / "manifest.json").read_text())["artifacts"]
        if "onnxruntime-genai" in a["runs_on"]}
if len(sys.argv) > 2 and sys.argv[2] not in arts:
    sys.exit(f"{out}: no artifact {sys.argv[2]!r} runs on onnxruntime-genai; allowed: {', '.join(arts)}")
art = arts[sys.argv[2]] if len(sys.argv) > 2 else min(arts.values(), key=lambda a: a["bytes"])  # the smallest
folder = (out / art["path"]).parent
model = og.Model(str(folder))
tokenizer, params = og.Tokenizer(model), og.GeneratorParams(model)
context = json.loads((folder / "genai_config.json").read_text())["model"]["context_length"]
params.set_search_options(max_length=min(512, context), do_sample=False)
for line in sys.stdin:
    try:
        prompt = tokenizer.apply_chat_template(json.dumps([{"role": "user", "content": line.strip()}]))
    except Exception:  # no chat template in this tokenizer
        prompt = line.strip()
    ids = tokenizer.encode(prompt)
    generator = og.Generator(model, params)
    generator.append_tokens(ids)
    while not generator.is_done():
        generator.generate_next_token()
    print(tokenizer.decode(generator.get_sequence(0)[len(ids):]), flush=True)
