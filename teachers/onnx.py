"""Fast CPU scoring: a cross-encoder exported to ONNX (optionally int8-quantized) and run
with onnxruntime, behind the same ``predict`` as ``CrossEncoder``.

sentence-transformers' own ONNX backend needs optimum, which does not support transformers 5
yet; torch's exporter and onnxruntime's dynamic quantizer do the same job. Inputs are the
CrossEncoder's own tokenization (same truncation), in batches of similar length; the result is
the raw score (logit).
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np

INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _export(model, path: Path) -> None:
    import torch

    from distill.artifacts import atomic_path

    class Scores(torch.nn.Module):
        def __init__(self, ce) -> None:
            super().__init__()
            self.ce = ce

        def forward(self, input_ids, attention_mask, token_type_ids):
            features = {
                "input_ids": input_ids,
                "attention_mask": attention_mask,
                "token_type_ids": token_type_ids,
                "modality": "text",
            }
            return self.ce(features)["scores"]

    sample = model.preprocess([("a query", "a document")])
    wrapper = Scores(model).eval()
    axes = {name: {0: "batch", 1: "tokens"} for name in INPUTS} | {"scores": {0: "batch"}}
    with atomic_path(path) as tmp, torch.no_grad(), warnings.catch_warnings():
        # tracing caveats the user cannot act on; the export is checked against torch on real
        # pairs before it is used (teachers.precision)
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            tuple(sample[k] for k in INPUTS),
            str(tmp),
            input_names=list(INPUTS),
            output_names=["scores"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )


class OnnxCrossEncoder:
    """``predict(pairs)`` of a CrossEncoder, computed by onnxruntime (fp32 or dynamic int8)."""

    def __init__(
        self, model, cache_dir: str | Path, *, quantize: bool, threads: int | None = None
    ) -> None:
        import onnxruntime as ort
        import torch

        self.model = model
        digest = hashlib.sha256()
        for tensor in model.state_dict().values():
            digest.update(tensor.detach().cpu().numpy().tobytes()[:4096])
        folder = Path(cache_dir) / digest.hexdigest()[:20]
        fp32 = folder / "model.onnx"
        if not fp32.is_file():
            _export(model, fp32)
        path = fp32
        if quantize:
            path = folder / "model.int8-per-channel.onnx"
            if not path.is_file():
                from onnxruntime.quantization import QuantType, quantize_dynamic

                from distill.artifacts import atomic_path

                # per-channel weight scales: on 450 pairs of the trained SciFact teacher,
                # Spearman 0.995 against 0.971 per-tensor, at the same speed
                from distill.console import quiet_root_logger

                with atomic_path(path) as tmp, quiet_root_logger():
                    quantize_dynamic(
                        str(fp32), str(tmp), weight_type=QuantType.QInt8, per_channel=True
                    )
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}  # the export prunes unused ones
        self.path = path

    def predict(
        self,
        pairs,
        batch_size: int = 32,
        activation_fn=None,
        show_progress_bar: bool | None = None,
        **_,
    ):
        from tqdm.auto import tqdm

        pairs = list(pairs)
        order = np.argsort(
            [-(len(q) + len(d)) for q, d in pairs], kind="stable"
        )  # similar lengths share a batch
        out = np.empty(len(pairs), dtype=np.float32)
        for start in tqdm(
            range(0, len(pairs), batch_size), disable=not show_progress_bar, desc="scoring (onnx)"
        ):
            idx = order[start : start + batch_size]
            features = self.model.preprocess([pairs[i] for i in idx])
            feed = {k: features[k].numpy() for k in INPUTS if k in features and k in self.inputs}
            if "token_type_ids" in self.inputs and "token_type_ids" not in feed:
                feed["token_type_ids"] = np.zeros_like(feed["input_ids"])
            out[idx] = self.session.run(None, feed)[0].reshape(-1)
        if activation_fn is not None:
            import torch

            out = activation_fn(torch.from_numpy(out)).numpy()
        return out
