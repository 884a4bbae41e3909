# %% [markdown]
# # 08 · Your model: forget vectors for your own classifier and image folder
# Bring a trained classifier (`MODEL`: a `.pt2` program, a TorchScript file, a torchvision
# architecture with its state dict, or a small model trained here) and an image folder
# (`DATA_ROOT`: `train/<class>/*`, `test/<class>/*`, any number of classes, any size), name what it
# should forget (`FORGET`: one class, several classes, or a list of training files), and get the
# unlearned system θ_o(x + δ) without touching θ_o's weights: the forget vector δ, its effect
# (UA / RA / TA / MIA-Efficacy before and after), where the model looks (Grad-CAM), and the system
# exported as ONNX and `torch.export` files, each checked against PyTorch and carded.
# θ_o's own input size and normalisation sit inside an adapter, so δ lives in [0, 1] pixel space.
# Under CI this runs on the embedded digits with a small CNN it trains in seconds.

# %%
MODEL: str = "train:small_cnn"  # .pt2 | TorchScript file | "resnet18:weights.pth" (torchvision) | "train:<fvlib arch>"
DATA_ROOT: str = ""  # folder or archive with train/<class>/ and test/<class>/; "": the embedded digits
FORGET: list = []  # one class name, several class names, or training files like "train/cat/0001.jpg"; []: the first class
MODEL_MEAN: list = []  # θ_o's input normalisation mean (RGB); []: it takes [0, 1] pixels
MODEL_STD: list = []  # θ_o's input normalisation std (RGB); trained here: the images' own
MODEL_SIZE: int = 0  # θ_o's input side when unlike the images' (0: the images' size)
CAM_LAYER: str = ""  # module path Grad-CAM hooks ("": the last convolution)
IMAGE_SIZE: int = 0  # bring every image to this square side (0: as stored)
AUGMENT: str = ""  # training view of a model trained here, Retrain and the δ solve: crop_flip | shift | resized_crop_flip | none
TRAIN_SUBSET: int = 0  # seeded random training images to use (0: all)
TEST_SUBSET: int = 0  # seeded random test images to use (0: all)
EPOCHS: int = 0  # θ_o's epochs when trained here (0: 15)
FV_EPOCHS: int = 0  # forget-vector epochs (0: 40, the authors' setting)
RETRAIN: bool = True  # Retrain on the retain set as the reference (only for a model trained here)
N_CAM: int = 3  # forget images and retain images in the Grad-CAM panel
NAME: str = ""  # outputs in figures/<NAME>/ and data/exports/<NAME>/ ("": smoke or your_model)
NOTE: str = ""  # a label shown with the results, e.g. "CPU demonstration, not the paper's setting"
SEED: int = 0  # subsets and Grad-CAM images

# %%
from IPython.display import display

from fvlib import export, own_model

own = own_model.setup(MODEL, DATA_ROOT, FORGET, mean=MODEL_MEAN or None, std=MODEL_STD or None,
                      model_size=MODEL_SIZE or None, cam_layer=CAM_LAYER or None,
                      image_size=IMAGE_SIZE or None, augment=AUGMENT or None,
                      train_subset=TRAIN_SUBSET, test_subset=TEST_SUBSET, epochs=EPOCHS or None,
                      fv_epochs=FV_EPOCHS or None, name=NAME, seed=SEED)
print(NOTE or "", own.describe(), sep="\n")

# %% [markdown]
# ## θ_o, the model as it is
# Accuracy on the training images it learned from and on the held-out test images. A model that
# fits its training set (train above test) is what membership inference can tell apart, so
# MIA-Efficacy below measures something.

# %%
theta_o = own.original_info()
own.save_table(theta_o.round(2), "your_model_theta_o", {"note": NOTE})
display(theta_o.round(2))

# %% [markdown]
# ## The forget vector
# One perturbation δ (3 × H × W) for the whole forget set, solved with θ_o frozen (fvlib's solver:
# the authors' objective, a forget margin term plus a retain cross-entropy and a norm penalty).

# %%
fv = own.solve()
print(fv)

# %% [markdown]
# ## Retrain, the reference
# θ_o's architecture and recipe trained from scratch without the forget set (the gold standard;
# possible only for a model fvlib trained, since it needs the recipe).

# %%
retrain, retrain_seconds = own.retrain() if RETRAIN and own.arch else (None, None)
print("Retrain skipped" if retrain is None else f"Retrain trained in {retrain_seconds:.0f} s")

# %% [markdown]
# ## Before and after: UA, RA, TA, MIA-Efficacy
# UA = error on the forget set (higher = forgotten), RA = accuracy on the retained training
# images, TA = test accuracy (without the forgotten classes), MIA-Efficacy = share of forget
# images a membership attack calls non-members; seconds = θ_o's training, Retrain's training, the
# solve of δ. All in %; closer to Retrain is better.

# %%
systems = {"θ_o": own.model, "Retrain": retrain, "FV": fv.wrap(own.model)}
systems = {name: system for name, system in systems.items() if system is not None}
seconds = {"θ_o": own.info.get("train_seconds"), "Retrain": retrain_seconds, "FV": fv.meta["seconds"]}
table = own.evaluate(systems, seconds).round(2)
own.save_table(table, "your_model_metrics", {"note": NOTE, "forget": own.forget_card()})
display(table)

# %% [markdown]
# ## Where the model looks: Grad-CAM before and after
# Rows: forget images (first), then retain images of other classes; columns: the systems. Each
# cell overlays Grad-CAM (target = the predicted class) on the input the model sees (x + δ for
# FV); ✓ = the true label, ✗ = not. Forgetting looks like a ✗ and a moved map on forget images
# and an unchanged ✓ on retain images.

# %%
panel = own.gradcam(systems, N_CAM, SEED)
if panel:
    own.save(panel[0], "your_model_gradcam", panel[1])
panel[0] if panel else None

# %% [markdown]
# ## Export: the unlearned system as deployable files
# ONNX (onnxruntime, CPU) and `torch.export` (.pt2), each with δ baked in and with δ as a second
# input (feed another δ, e.g. a sum of class vectors, and the same graph forgets something else).
# Every file is compared with eager PyTorch on the whole test set (max |Δ logit|, also relative to
# max(1, |logit|), where the check's bound 1e-5 applies; identical predictions) and gets a model
# card (JSON) beside it; the folder is written atomically.

# %%
cards = own.export(fv, metrics=table)
checks = export.summary(cards)
own.save_table(checks, "your_model_export", {"note": NOTE})
display(checks)

# %% [markdown]
# ## Wall time of each part

# %%
timings = own.timing_table().round(1)
own.save_table(timings, "your_model_timings", {"note": NOTE})
display(timings)

# %%
# Sanity checks (nbval runs this in CI)
assert table.loc["FV", "UA"] > table.loc["θ_o", "UA"], table  # δ forgets ...
assert table.loc["FV", "RA"] > 50, table  # ... and keeps most of the rest
assert len(cards) == 4 and all(c["check"]["passed"] for c in cards.values()), checks
assert all(c["check"]["prediction_mismatches"] == 0 for c in cards.values()), checks
