"""MLM adaptation probe (issue 5): python -m experiments.probes.mlm_adapt_probe adapt STEPS [LR] | run VARIANT K LR EPOCHS [STEPS] [ADAPT_LR]"""
import json, os, sys, time
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("CLOCE_CACHE_DIR", os.path.expanduser("~/.cache/cloce"))
from cloce.config import MlmAdaptConfig, TrainConfig
from cloce.data.dataset import load_dataset
from cloce.runtime import set_threads

THREADS = 2 if os.getloadavg()[0] < 1.5 else 1  # oversubscribed OpenMP threads spin and slow everyone
set_threads(THREADS)
ds = load_dataset(None)
cmd = sys.argv[1]
if cmd == "adapt":
    from cloce.mlm_adapt import adapt_backbone
    steps = int(sys.argv[2]); lr = float(sys.argv[3]) if len(sys.argv) > 3 else 5e-5
    r = adapt_backbone(None, [i.tokens for i in ds.train], MlmAdaptConfig(steps=steps, lr=lr, batch_size=32))
    print(json.dumps({"adapt": steps, "lr": lr, "reused": r.reused, "seconds": round(r.seconds, 1), **r.info}))
else:
    from cloce.train import train
    variant, k, lr, epochs = sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
    steps = int(sys.argv[6]) if len(sys.argv) > 6 else 0
    alr = float(sys.argv[7]) if len(sys.argv) > 7 else 5e-5
    cfg = TrainConfig(variant=variant, k=k, seed=1, epochs=epochs, batch_size=8, lr=lr, kshot_val=True,
                      test_sample=500, num_threads=THREADS, mlm_adapt_steps=steps, mlm_adapt_lr=alr,
                      sentence_markers=False, kshot_sampler="per_label")  # unmarked, on the sets its results file was recorded with
    t = time.perf_counter()
    res = train(cfg, ds)
    out = {"variant": variant, "k": k, "lr": lr, "epochs": epochs, "adapt_steps": steps, "adapt_lr": alr,
           "test_micro_f1": round(100 * res.test.micro_f1, 1), "best_val": round(100 * res.best_val.micro_f1, 1),
           "best_epoch": res.best_epoch, "val_curve": [round(100 * r.val_micro_f1, 1) for r in res.history],
           "ce_seconds": [round(r.ce_seconds, 1) for r in res.history], "seconds": round(time.perf_counter() - t, 1),
           "head_pretrained": res.pipeline.head_pretrained, "threads": THREADS,
           "adapt_reused": None if res.mlm_adapt is None else res.mlm_adapt.reused}
    print(json.dumps(out))
