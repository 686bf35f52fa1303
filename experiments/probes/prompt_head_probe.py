"""Prompt-head probe (issue 5): does the fresh [MASK] head learn too slowly at the encoder's lr?

    python -m experiments.probes.prompt_head_probe VARIANT K LR EPOCHS HEAD_LR_SCALE [SEED]

Trains one run like a `semeval_results` trial (batch 8, 300 val sentences, bf16) with the
parameters outside the encoder (the MLM head transform and bias / the marker classifier) at
HEAD_LR_SCALE x LR, and prints one JSON line. PROBE_HEAD_INIT=identity|random sets how the
fresh MLM head transform starts (identity, the default since these runs; the records before
that option existed, without "head_init" or with "random", ran random); PROBE_LABEL_INIT=prototype
starts the soft labels from the centred mean [MASK] state of each relation's K-shot sentences;
PROBE_MARKERS=1 sets TrainConfig.sentence_markers.
"""
import json, os, sys, time
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch
import cloce.optim as optim_module  # the loop builds its CE optimiser as optim.model_adamw: patched here
import cloce.train as train_module
from cloce.config import TrainConfig
from cloce.data.dataset import load_dataset
from cloce.runtime import set_threads

variant, k, lr, epochs, scale = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
seed = int(sys.argv[6]) if len(sys.argv) > 6 else 1
THREADS = 2 if os.getloadavg()[0] < 1.5 else 1
set_threads(THREADS)


def scaled_adamw(model, lr, weight_decay):
    encoder = {id(p) for p in model.encoder_parameters()}
    head = [p for p in model.parameters() if p.requires_grad and id(p) not in encoder]
    optimizer = original(model, lr, weight_decay)
    head_ids = {id(p) for p in head}
    for group in optimizer.param_groups:
        group["params"] = [p for p in group["params"] if id(p) not in head_ids]
    optimizer.add_param_group({"params": head, "lr": lr * scale, "weight_decay": 0.0})
    return optimizer


original = optim_module.model_adamw
optim_module.model_adamw = scaled_adamw
HEAD_INIT = os.environ.get("PROBE_HEAD_INIT", "identity")  # TrainConfig.fresh_head_init: identity | random
LABEL_INIT = os.environ.get("PROBE_LABEL_INIT", "name")  # name | prototype: soft labels from the K-shot [MASK] states
if LABEL_INIT == "prototype":
    splits = []
    original_split = train_module.EncodedSplit

    def recording_split(items):
        split = original_split(items)
        splits.append(split)
        return split

    train_module.EncodedSplit = recording_split
    adamw_before = optim_module.model_adamw

    def prototype_then_adamw(model, lr, weight_decay, word_lr=None):
        from cloce.encoding import Collator
        pipeline_model = model
        head = pipeline_model.mlm.get_submodule(pipeline_model.head_name).predictions.transform
        train_split = splits[0]
        collate = Collator(0)
        vectors, labels = [], []
        with torch.no_grad():
            model.eval()
            for start in range(0, len(train_split), 32):
                batch = collate([train_split[i] for i in range(start, min(start + 32, len(train_split)))])
                vectors.append(head(pipeline_model(batch, output="mask_vector")))
                labels.append(batch["labels"])
            vectors, labels = torch.cat(vectors), torch.cat(labels)
            seen = [c for c in range(len(pipeline_model.label_token_ids)) if (labels == c).any()]
            means = torch.stack([vectors[labels == c].mean(0) for c in seen])
            means = means - means.mean(0, keepdim=True)
            weight = pipeline_model.mlm.get_input_embeddings().weight
            radius = weight[: pipeline_model.label_token_ids.min()].norm(dim=-1).mean()
            rows = pipeline_model.label_token_ids[torch.tensor(seen)]  # unseen classes keep their name init
            weight[rows] = means / means.norm(dim=-1, keepdim=True) * radius
            model.train()
        return adamw_before(model, lr, weight_decay)

    optim_module.model_adamw = prototype_then_adamw


cfg = TrainConfig(variant=variant, k=k, seed=seed, epochs=epochs, batch_size=8, eval_batch_size=64, max_seq_len=128, lr=lr, val_sample=300,
                  num_threads=THREADS, bf16=True, fresh_head_init=HEAD_INIT, kshot_sampler="per_label",  # as recorded
                  sentence_markers=os.environ.get("PROBE_MARKERS") == "1")  # @ head @ ... # tail # in the sentence
t = time.perf_counter()
dataset = load_dataset(None)
res = train_module.train(cfg, dataset)
# Of the test errors, how many pick the right relation in the wrong direction?
labels = res.pipeline.label_map.labels
base = lambda i: labels[i].split("(")[0]
gold = [res.pipeline.label_map.id_of(x.relation) for x in dataset.test]
errors = [(g, p) for g, p in zip(gold, res.test_predictions) if g != p]
flips = sum(base(g) == base(p) and "(" in labels[g] for g, p in errors)
print(json.dumps({"variant": variant, "k": k, "lr": lr, "epochs": epochs, "head_lr_scale": scale, "seed": seed,
                  "test_micro_f1": round(100 * res.test.micro_f1, 1), "best_val": round(100 * res.best_val.micro_f1, 1),
                  "best_epoch": res.best_epoch, "val_curve": [round(100 * r.val_micro_f1, 1) for r in res.history],
                  "seconds": round(time.perf_counter() - t, 1), "threads": THREADS, "head_init": HEAD_INIT, "label_init": LABEL_INIT, "markers": os.environ.get("PROBE_MARKERS") == "1",
                  "test_errors": len(errors), "direction_flips": flips}), flush=True)
