"""The published numbers our tables print beside ours, in one place: the paper's Tables 1
and 4 by reference model (`SUITE`, for `hierre_jax.evaluate --reference`), its ablation
rows (`ABLATIONS`, Tables 3 and 5) and DCSM's (`DCSM`). Keys are our metric names; a key
absent was not published.
"""

# The paper's published rows (SPEC sections 4 and 5); keys absent were not published.
SUITE = {
    "clip_b32": {
        "paper: CLIP ViT-B/32 zero-shot": {
            "hierarcaps/precision": 0.14, "hierarcaps/recall": 0.36, "hierarcaps/tau_d": 0.89,
            "hyperlex/rho_all": 0.44, "hyperlex/rho_nouns": 0.48, "breeds/mean/r@1": 0.22,
            "breeds/mean/r@5": 0.50, "coco/t2i_r@1": 0.30,
            "coco/t2i_r@5": 0.55, "coco/t2i_r@10": 0.66, "flickr30k/t2i_r@1": 0.59,
            "flickr30k/t2i_r@5": 0.83, "flickr30k/t2i_r@10": 0.90, "cifar10/top1": 0.90,
            "cifar100/top1": 0.66},
        "paper: CLIP ViT-B/32 RE fine-tuned": {
            "hierarcaps/precision": 0.15, "hierarcaps/recall": 0.47, "hierarcaps/tau_d": 0.99,
            "hyperlex/rho_all": 0.51, "hyperlex/rho_nouns": 0.55, "breeds/mean/r@1": 0.24,
            "breeds/mean/r@5": 0.55, "coco/t2i_r@1": 0.31,
            "coco/t2i_r@5": 0.56, "coco/t2i_r@10": 0.67, "flickr30k/t2i_r@1": 0.60,
            "flickr30k/t2i_r@5": 0.84, "flickr30k/t2i_r@10": 0.91, "cifar10/top1": 0.90,
            "cifar100/top1": 0.65}},
    "clip_l14": {
        "paper: CLIP ViT-L/14 zero-shot": {
            "hierarcaps/precision": 0.16, "hierarcaps/recall": 0.37, "hierarcaps/tau_d": 0.88,
            "hyperlex/rho_all": 0.42, "hyperlex/rho_nouns": 0.44, "breeds/mean/r@1": 0.29,
            "breeds/mean/r@5": 0.61},
        "paper: CLIP ViT-L/14 RE fine-tuned": {
            "hierarcaps/precision": 0.15, "hierarcaps/recall": 0.44, "hierarcaps/tau_d": 0.97,
            "hyperlex/rho_all": 0.50, "hyperlex/rho_nouns": 0.54, "breeds/mean/r@1": 0.32,
            "breeds/mean/r@5": 0.65}},
    # Table 1's OpenCLIP rows (laion/CLIP-ViT-B-32-laion2B-s34B-b79K and
    # laion/CLIP-ViT-H-14-laion2B-s32B-b79K, the supplementary's checkpoints; the open_clip
    # family loads them as distributed).
    "open_clip_b32": {
        "paper: OpenCLIP ViT-B/32 zero-shot": {
            "hierarcaps/precision": 0.16, "hierarcaps/recall": 0.33, "hierarcaps/tau_d": 0.87,
            "hyperlex/rho_all": 0.34, "hyperlex/rho_nouns": 0.37, "breeds/mean/r@1": 0.23,
            "breeds/mean/r@5": 0.50, "coco/t2i_r@1": 0.39, "coco/t2i_r@5": 0.65,
            "cifar10/top1": 0.94, "cifar100/top1": 0.76},
        "paper: OpenCLIP ViT-B/32 RE fine-tuned": {
            "hierarcaps/precision": 0.14, "hierarcaps/recall": 0.40, "hierarcaps/tau_d": 0.98,
            "hyperlex/rho_all": 0.49, "hyperlex/rho_nouns": 0.55, "breeds/mean/r@1": 0.25,
            "breeds/mean/r@5": 0.56, "coco/t2i_r@1": 0.39, "coco/t2i_r@5": 0.65,
            "cifar10/top1": 0.93, "cifar100/top1": 0.77}},
    "open_clip_h14": {
        "paper: OpenCLIP ViT-H/14 zero-shot": {
            "hierarcaps/precision": 0.16, "hierarcaps/recall": 0.32, "hierarcaps/tau_d": 0.83,
            "hyperlex/rho_all": 0.06, "hyperlex/rho_nouns": 0.03, "breeds/mean/r@1": 0.23,
            "breeds/mean/r@5": 0.50, "coco/t2i_r@1": 0.48, "coco/t2i_r@5": 0.73,
            "cifar10/top1": 0.98, "cifar100/top1": 0.86},
        "paper: OpenCLIP ViT-H/14 RE fine-tuned": {
            "hierarcaps/precision": 0.16, "hierarcaps/recall": 0.36, "hierarcaps/tau_d": 0.97,
            "hyperlex/rho_all": 0.37, "hyperlex/rho_nouns": 0.39, "breeds/mean/r@1": 0.31,
            "breeds/mean/r@5": 0.65, "coco/t2i_r@1": 0.48, "coco/t2i_r@5": 0.73,
            "cifar10/top1": 0.98, "cifar100/top1": 0.86}},
    # Tables 1 and 4 (ALIGN_SPEC section 7): Table 4 repeats Table 1's COCO R@1, R@5 and
    # CIFAR numbers and adds COCO R@10 and Flickr30K.
    "align": {
        "paper: ALIGN zero-shot": {
            "hierarcaps/precision": 0.16, "hierarcaps/recall": 0.36, "hierarcaps/tau_d": 0.89,
            "hyperlex/rho_all": 0.35, "hyperlex/rho_nouns": 0.37, "breeds/mean/r@1": 0.21,
            "breeds/mean/r@5": 0.52, "coco/t2i_r@1": 0.42, "coco/t2i_r@5": 0.67,
            "coco/t2i_r@10": 0.77, "flickr30k/t2i_r@1": 0.74, "flickr30k/t2i_r@5": 0.92,
            "flickr30k/t2i_r@10": 0.96, "cifar10/top1": 0.78, "cifar100/top1": 0.53},
        "paper: ALIGN RE fine-tuned": {
            "hierarcaps/precision": 0.16, "hierarcaps/recall": 0.42, "hierarcaps/tau_d": 0.96,
            "hyperlex/rho_all": 0.44, "hyperlex/rho_nouns": 0.47, "breeds/mean/r@1": 0.23,
            "breeds/mean/r@5": 0.58, "coco/t2i_r@1": 0.42, "coco/t2i_r@5": 0.67,
            "coco/t2i_r@10": 0.77, "flickr30k/t2i_r@1": 0.74, "flickr30k/t2i_r@5": 0.92,
            "flickr30k/t2i_r@10": 0.96, "cifar10/top1": 0.78, "cifar100/top1": 0.53}},
    # The paper's MERU row (seed 003): MERU ViT-L with MERU's traversal inference, beside
    # CLIP-L's rows.
    "meru": {
        "paper: MERU ViT-L (hyperbolic traversal)": {
            "hierarcaps/traversal/precision": 0.11, "hierarcaps/traversal/recall": 0.11,
            "hierarcaps/tau_d": 0.79}},
    "scratch": {
        "paper: trained from scratch (CLIP-B shape)": {
            "hierarcaps/precision": 0.00, "hierarcaps/recall": 0.01, "hierarcaps/tau_d": 0.93,
            "hyperlex/rho_all": 0.11, "hyperlex/rho_nouns": 0.12}},
}

SUITE["meru"].update(SUITE["clip_l14"])  # CLIP-L's rows beside MERU's


def _published(p, r, tau_d, rho_all=None, rho_nouns=None, b1=None, b5=None, c1=None, c5=None):
  values = {"hierarcaps/precision": p, "hierarcaps/recall": r, "hierarcaps/tau_d": tau_d,
            "hyperlex/rho_all": rho_all, "hyperlex/rho_nouns": rho_nouns,
            "breeds/mean/r@1": b1, "breeds/mean/r@5": b5, "coco/t2i_r@1": c1, "coco/t2i_r@5": c5}
  return {k: v for k, v in values.items() if v is not None}


# The paper's rows (CLIP ViT-B/32; SPEC section 6): HierarCaps P/R/tau_d, HyperLex
# rho_all/rho_nouns, BREEDS R@1/R@5, COCO T2I R@1/R@5. Table 5 gives HierarCaps only.
ABLATIONS = {
    # Table 3's method row is Table 1's RE fine-tuned CLIP ViT-B/32 (its first nine numbers).
    "method": {k: v for k, v in SUITE["clip_b32"]["paper: CLIP ViT-B/32 RE fine-tuned"].items()
               if k in _published(*range(9))},
    "root_mean": _published(0.16, 0.44, 0.98, 0.50, 0.55, 0.24, 0.54, 0.32, 0.56),
    "root_origin": _published(0.21, 0.19, 0.54, 0.23, 0.23, 0.04, 0.09, 0.31, 0.55),
    "root_pretrained": _published(0.14, 0.47, 0.98, 0.50, 0.55, 0.24, 0.54, 0.31, 0.55),
    "root_only": _published(0.15, 0.37, 0.93, 0.47, 0.51, 0.24, 0.53, 0.29, 0.53),
    "no_pullback": _published(0.15, 0.45, 0.99, 0.49, 0.53, 0.21, 0.52, 0.26, 0.49),
    "three_tiers": _published(0.17, 0.50, 0.93, 0.40, 0.44, 0.17, 0.41, 0.30, 0.54),
    "no_negatives": _published(0.16, 0.42, 0.99, 0.48, 0.52, 0.25, 0.54, 0.28, 0.52),
    "clip_objective": _published(0.14, 0.28, 0.95, 0.43, 0.47, 0.22, 0.49, 0.32, 0.58),
    "from_scratch": _published(0.00, 0.01, 0.93, 0.11, 0.12, 0.00, 0.00, 0.00, 0.00),
    "ec_margin_1": _published(0.13, 0.30, 0.97),
    "ec_margin_2": _published(0.14, 0.33, 0.97),
    "ec_margin_3": _published(0.14, 0.35, 0.98),
    "ec_margin_4": _published(0.17, 0.46, 0.99),
}


# DCSM_SPEC section 8 (accuracy %). The paper publishes one number (WhatsUp overall, how its
# subsets were combined is not public); the rest is a third-party run of the released
# checkpoint, and NegBench's own OpenAI CLIP ViT-B/32 baseline.
DCSM = {
    "whatsup_a": {"released_checkpoint_third_party": 44.66, "paper_whatsup_overall": 63.7},
    "whatsup_b": {"released_checkpoint_third_party": 54.66, "paper_whatsup_overall": 63.7},
    "coco_spatial_1": {"released_checkpoint_third_party": 58.30},
    "coco_spatial_2": {"released_checkpoint_third_party": 76.36},
    "vg_spatial_1": {"released_checkpoint_third_party": 62.41},
    "vg_spatial_2": {"released_checkpoint_third_party": 67.01},
    "ncd_1": {"released_checkpoint_third_party": 95.70},
    "ncd_2": {"released_checkpoint_third_party": 94.79},
    "clevr_bind_train": {"released_checkpoint_third_party": 40.33},
    "clevr_bind_val": {"released_checkpoint_third_party": 33.38},
    "clevr_bind_gen": {"released_checkpoint_third_party": 45.97},
    "negbench_coco": {"released_checkpoint_third_party": 44.84, "clip_b32_negbench": 39.30},
    "negbench_voc": {"released_checkpoint_third_party": 44.25, "clip_b32_negbench": 38.72},
}

# What makes a published DCSM number differ from ours in method, printed beside it.
DCSM_CAVEATS = {
    f"negbench_{source}": "released_checkpoint_third_party was computed with the release's "
    "answer convention (caption_0 taken as the answer); ours reads the correct_answer column"
    for source in ("coco", "voc")}
