"""The recorder on tiny randomly initialised models built from a config (no download): its ids and weights against
the routing computed here from each gate's logits, its `pred` against layer l+1's gate applied to layer l's input,
and the whole command through `moesim`."""
import csv
import gzip
import json
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from moesim_trace import cli  # noqa: E402
from helpers import HAVE_MOESIM, MOESIM, NO_MOESIM, FolderTest  # noqa: E402
from moesim_trace.trace import TraceError  # noqa: E402

try:
    import torch
    import transformers  # noqa: F401
    HAVE_TORCH = True
except ImportError:
    HAVE_TORCH = False
if os.environ.get("MOESIM_REQUIRE_TORCH") == "1" and not HAVE_TORCH:
    raise RuntimeError("MOESIM_REQUIRE_TORCH=1 but torch or transformers is missing")

PROMPTS = [[256, 72, 101, 108, 108, 111], [256, 65, 32, 66, 32, 67, 32, 68, 32, 69], [256, 120]]


class GateTap:
    """The test's own hooks: every call's gate input and logits, per MoE layer, in call order."""

    def __init__(self, model):
        self.gates = [layer.mlp.gate for layer in model.model.layers]
        self.inputs = [[] for _ in self.gates]
        self.logits = [[] for _ in self.gates]
        self.handles = [g.register_forward_hook(self.hook(n)) for n, g in enumerate(self.gates)]

    def hook(self, n):
        def tap(gate, inputs, output):
            self.inputs[n].append(inputs[0].reshape(-1, gate.weight.shape[1]).detach().double())
            self.logits[n].append((output[0] if isinstance(output, tuple) else output).detach().double())
        return tap

    def rows(self, n):
        return torch.cat(self.inputs[n]), torch.cat(self.logits[n])

    def close(self):
        for h in self.handles:
            h.remove()


@unittest.skipUnless(HAVE_TORCH, "torch and transformers absent: pip install torch transformers (make python-test does)")
class RecorderTests(FolderTest):
    def check_family(self, family, normalised, width):
        from moesim_trace import record, tiny
        config = tiny.tiny_config(family, layers=3, experts=8, top_k=2, hidden=32)
        model = tiny.tiny_model(config, seed=7)
        for prompt_index, prompt in enumerate(PROMPTS):
            tap = GateTap(model)
            builder = record.record_tokens(model, [prompt], max_new_tokens=5, pred_width=width, model_name=family)
            tap.close()
            tokens = builder.lines
            prefill = [t for t in tokens if t["phase"] == "prefill"]
            self.assertEqual(len(prefill), len(prompt))
            self.assertEqual([t["pos"] for t in tokens], list(range(len(tokens))))
            self.assertLessEqual(len(tokens) - len(prompt), 4)  # the last generated token is never forwarded
            self.assertEqual(builder.layers, 3)
            for layer in range(3):
                x, logits = tap.rows(layer)
                self.assertEqual(len(x), len(tokens))
                probs = torch.softmax(logits, dim=-1)
                top, ids = torch.topk(probs, 2, dim=-1)
                if normalised:
                    top = top / top.sum(dim=-1, keepdim=True)
                for row, token in enumerate(tokens):
                    self.assertEqual(token["experts"][layer], ids[row].tolist(), f"{family} prompt {prompt_index} token {row} layer {layer}")
                    for got, want in zip(token["weights"][layer], top[row].tolist()):
                        self.assertAlmostEqual(got, want, places=5)
                if layer + 1 < 3:
                    following = x @ tap.gates[layer + 1].weight.detach().double().T
                    predicted = torch.topk(following, width, dim=-1).indices
                    for row, token in enumerate(tokens):
                        self.assertEqual(token["pred"][layer + 1], predicted[row].tolist())
            self.assertTrue(all(t["pred"][0] is None for t in tokens))

    def test_mixtral_routing_weights_and_predictions(self):
        self.check_family("mixtral", normalised=True, width=2)

    def test_qwen3_moe_routing_weights_and_predictions(self):
        self.check_family("qwen3-moe", normalised=True, width=4)

    def test_olmoe_keeps_softmax_probabilities(self):
        self.check_family("olmoe", normalised=False, width=3)

    def test_qwen2_moe_shared_expert_gate_is_not_a_router(self):
        self.check_family("qwen2-moe", normalised=False, width=2)

    def prompts_file(self, text):
        path = os.path.join(self.dir, "prompts.txt")
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_command_end_to_end_through_moesim(self):
        model_dir = os.path.join(self.dir, "tiny")
        self.assertEqual(cli.main(["tiny-model", "--family", "mixtral", "--layers", "3", "--out", model_dir]), 0)
        prompts = self.prompts_file("Hello there\n\n{\"prompt\": \"caches and experts\"}\n{\"input_ids\": [256, 40, 41]}\n")
        out = os.path.join(self.dir, "t.jsonl.gz")
        self.assertEqual(cli.main(["record", "--model", model_dir, "--prompts", prompts, "--max-new-tokens", "6",
                                   "--pred-width", "3", "--out", out]), 0)
        with gzip.open(out, "rt") as f:
            header, *tokens = [json.loads(line) for line in f]
        self.assertEqual((header["layers"], header["experts"], header["top_k"], header["model"]), (3, 8, 2, "tiny"))
        self.assertIn("moesim-trace record", header["source"])
        self.assertEqual(sorted({t["seq"] for t in tokens}), [0, 1, 2])
        # "Hello there" is 11 bytes; the tokenizer adds no BOS; the third prompt is given as ids.
        self.assertEqual(sum(1 for t in tokens if t["seq"] == 0 and t["phase"] == "prefill"), 11)
        self.assertEqual(sum(1 for t in tokens if t["seq"] == 2 and t["phase"] == "prefill"), 3)
        self.assertTrue(all(len(t["pred"][1]) == 3 for t in tokens))
        # The model's profile beside the trace, counted by hand from tiny_config("mixtral", layers=3): attention
        # q and o 64 x (4 heads x 16), k and v 64 x (2 x 16), router 8 x 64, two norms of 64; experts 3 x 64 x 128.
        with open(os.path.join(self.dir, "t.model.yaml")) as f:
            profile = dict(line.split(": ", 1) for line in f.read().splitlines() if not line.startswith("#"))
        self.assertEqual({k: profile[k].split("  #")[0] for k in ("layers", "experts", "top_k", "hidden", "expert_ffn", "matrices",
                                                                "non_expert_params_per_layer", "attention_heads", "kv_heads", "head_dim")},
                         {"layers": "3", "experts": "8", "top_k": "2", "hidden": "64", "expert_ffn": "128", "matrices": "3",
                          "non_expert_params_per_layer": str(2 * 64 * 64 + 2 * 64 * 32 + 8 * 64 + 2 * 64),
                          "attention_heads": "4", "kv_heads": "2", "head_dim": "16"})
        if not HAVE_MOESIM:
            self.skipTest(NO_MOESIM)
        # No preset has this shape: replay takes the profile beside the trace, and says so.
        plain = subprocess.run([MOESIM, "replay", out, "--policy", "lru", "--budget", "8experts",
                                "--out", os.path.join(self.dir, "plain.csv")], capture_output=True, text=True)
        self.assertEqual(plain.returncode, 0, plain.stderr)
        self.assertIn("model: tiny from " + os.path.join(self.dir, "t.model.yaml"), plain.stdout)
        os.unlink(os.path.join(self.dir, "t.model.yaml"))
        refused = subprocess.run([MOESIM, "replay", out, "--policy", "lru", "--budget", "8experts"], capture_output=True, text=True)
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn("t.model.yaml", refused.stderr)
        check = subprocess.run([MOESIM, "trace", "validate", out], capture_output=True, text=True)
        self.assertEqual(check.returncode, 0, check.stderr)
        report = os.path.join(self.dir, "r.csv")
        run = subprocess.run([MOESIM, "replay", out, "--model", "mixtral-8x7b", "--set", "model.layers=3",
                              "--policy", "cross-layer-gate", "--budget", "8experts", "--out", report],
                             capture_output=True, text=True)
        self.assertEqual(run.returncode, 0, run.stderr)
        with open(report) as f:
            row = next(csv.DictReader(f))
        self.assertEqual(row["predictor_source"], "trace")
        # Recall counted here from the file: per step (a sequence's prefill is one step, each decode token one), the
        # union of the predictions for layers 1.. against the union of the routed experts.
        steps = {}
        for t in tokens:
            key = (t["seq"], -1) if t["phase"] == "prefill" else (t["seq"], t["pos"])
            steps.setdefault(key, []).append(t)
        correct = actual = 0
        for group in steps.values():
            for layer in range(1, 3):
                predicted = set().union(*(t["pred"][layer] for t in group))
                routed = set().union(*(t["experts"][layer] for t in group))
                correct += len(predicted & routed)
                actual += len(routed)
        self.assertAlmostEqual(float(row["pred_recall"]), correct / actual, places=12)

    def test_a_profile_that_cannot_be_written_is_named_not_a_traceback(self):
        from moesim_trace import record
        from moesim_trace.trace import TraceError
        trace = os.path.join(self.dir, "t.jsonl.gz")
        os.mkdir(os.path.join(self.dir, "t.model.yaml"))  # a folder where the profile goes
        with self.assertRaises(TraceError) as caught:
            record.write_profile("layers: 1\n", trace)
        self.assertIn("t.model.yaml: cannot write the model profile", str(caught.exception))

    def test_bad_input_names_the_field_and_writes_nothing(self):
        from moesim_trace import record, tiny
        model_dir = os.path.join(self.dir, "tiny")
        tiny.write_tiny_model("qwen3-moe", model_dir, layers=2)
        out = os.path.join(self.dir, "t.jsonl")
        cases = [
            ("{\"prompt\": 3}\n", "prompts.txt:1: field 'prompt'"),
            ("ok\n{\"input_ids\": [1, \"a\"]}\n", "prompts.txt:2: field 'input_ids'"),
            ("{broken\n", "prompts.txt:1: not JSON"),
            ("{\"input_ids\": [1, 9999]}\n", "token id 9999 out of the model's vocabulary"),
            ("\n\n", "no prompts"),
        ]
        for text, message in cases:
            with self.subTest(message=message):
                with self.assertRaises(TraceError) as e:
                    record.record(model_dir, self.prompts_file(text), 4, out)
                self.assertIn(message, str(e.exception))
                self.assertFalse(os.path.exists(out))
        with self.assertRaisesRegex(TraceError, "--pred-width 9: must be between top_k"):
            record.record(model_dir, self.prompts_file("hi\n"), 4, out, pred_width=9)
        with self.assertRaisesRegex(TraceError, "--max-new-tokens 0"):
            record.record(model_dir, self.prompts_file("hi\n"), 0, out)
        with self.assertRaisesRegex(TraceError, "--device 'gpu0': not a torch device"):
            record.record(model_dir, self.prompts_file("hi\n"), 4, out, device="gpu0")
        if not torch.cuda.is_available():
            with self.assertRaisesRegex(TraceError, "--device cuda: no CUDA GPU visible"):
                record.record(model_dir, self.prompts_file("hi\n"), 4, out, device="cuda")
        self.assertEqual(set(os.listdir(self.dir)), {"tiny", "prompts.txt"})

    def test_bfloat16_records_the_routers_own_choice(self):
        from moesim_trace import record, tiny
        model_dir = os.path.join(self.dir, "tiny")
        tiny.write_tiny_model("mixtral", model_dir, layers=2)
        out = os.path.join(self.dir, "t.jsonl")
        builder = record.record(model_dir, self.prompts_file("{\"input_ids\": [256, 1, 2, 3]}\n"), 3, out, dtype="bfloat16")
        self.assertIn("bfloat16 on cpu", builder.header["source"])
        model, _ = record.load(model_dir, dtype="bfloat16")
        self.assertEqual(model.dtype, torch.bfloat16)
        tap = GateTap(model)
        with torch.no_grad():
            model(torch.tensor([[256, 1, 2, 3]]))
        tap.close()
        _, logits = tap.rows(0)
        ids = torch.topk(torch.softmax(logits, dim=-1), 2, dim=-1).indices.tolist()
        self.assertEqual([t["experts"][0] for t in builder.lines[:4]], ids)

    def test_an_older_logits_only_router_is_routed_by_the_familys_rule(self):
        # Before transformers 5, `gate` was a Linear returning logits and the block did softmax, top-k, renormalising.
        from types import SimpleNamespace
        from moesim_trace import record
        torch.manual_seed(3)
        gates = [torch.nn.Linear(16, 6, bias=False) for _ in range(3)]
        layers = [SimpleNamespace(mlp=SimpleNamespace(gate=g)) for g in gates]
        for family, normalised in (("mixtral", True), ("qwen2_moe", False)):
            config = SimpleNamespace(model_type=family, num_experts_per_tok=2, norm_topk_prob=False)
            model = SimpleNamespace(model=SimpleNamespace(layers=layers), config=config)
            inputs = [torch.randn(5, 16) for _ in gates]
            with self.subTest(family), record.GateRecorder(model, pred_width=3) as recorder:
                with torch.no_grad():
                    for gate, x in zip(gates, inputs):  # one forward pass: each gate on its layer's input
                        gate(x)
                (forward,) = recorder.passes
                for l, (gate, x) in enumerate(zip(gates, inputs)):
                    ids, weights, pred = forward[l]
                    probs = torch.softmax(x.double() @ gate.weight.double().T, dim=-1)
                    top, want = torch.topk(probs, 2, dim=-1)
                    if normalised:
                        top = top / top.sum(dim=-1, keepdim=True)
                    self.assertEqual(ids, want.tolist())
                    for got, expected in zip(weights, top.tolist()):
                        self.assertEqual(len(got), 2)
                        for a, b in zip(got, expected):
                            self.assertAlmostEqual(a, b, places=5)
                    if l + 1 < len(gates):
                        following = x.double() @ gates[l + 1].weight.double().T
                        self.assertEqual(pred, torch.topk(following, 3, dim=-1).indices.tolist())
                    else:
                        self.assertIsNone(pred)

    def test_a_dense_model_is_refused(self):
        from moesim_trace import record
        config = transformers.MistralConfig(vocab_size=260, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                            num_attention_heads=4, num_key_value_heads=2)
        dense = os.path.join(self.dir, "dense")
        transformers.AutoModelForCausalLM.from_config(config).save_pretrained(dense)
        out = os.path.join(self.dir, "t.jsonl")
        with self.assertRaisesRegex(TraceError, r"MistralForCausalLM \(mistral\): no layer has a router .*not a MoE model"):
            record.record(dense, self.prompts_file("hi\n"), 4, out)
        self.assertFalse(os.path.exists(out))
        self.assertEqual(cli.main(["record", "--model", os.path.join(self.dir, "absent"), "--prompts",
                                   self.prompts_file("hi\n"), "--out", out]), 1)


if __name__ == "__main__":
    unittest.main()
