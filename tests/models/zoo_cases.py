"""The networks of the zoo and what each should give (shared by the tests here).

Every registered network needs its case in `EXPECTED`, and every one registered with
torchvision weights its case in `TORCHVISION` (``test_model_zoo.py`` checks both)."""

from __future__ import annotations

#: name -> (input size, channels of the last conv maps, their height = width at that size)
EXPECTED = {
    "vgg16_gap": (224, 1024, 14),
    "vgg16": (224, 512, 14),
    "alexnet_gap": (227, 1024, 13),
    "alexnet_star_gap": (227, 512, 11),
    "alexnet": (227, 256, 13),
    "nin": (224, None, 6),  # one channel per class
    "resnet50_gap": (224, 2048, 14),
    "inceptionv3_gap": (224, 1024, 14),
    "googlenet_gap": (224, 1024, 14),
    "googlenet": (224, 1024, 7),
    "tiny_gap": (64, 64, 8),
}
NETWORKS = tuple(EXPECTED)
FC_NETWORKS = ("vgg16", "alexnet")
CAM_NETWORKS = tuple(n for n in NETWORKS if n not in FC_NETWORKS)
#: networks with torchvision weights, and the torchvision builder + kwargs as its weights have it
TORCHVISION = {
    "vgg16_gap": ("vgg16", {}),
    "vgg16": ("vgg16", {}),
    "alexnet_gap": ("alexnet", {}),
    "alexnet_star_gap": ("alexnet", {}),
    "alexnet": ("alexnet", {}),
    "resnet50_gap": ("resnet50", {}),
    "inceptionv3_gap": ("inception_v3", {"aux_logits": True, "init_weights": True}),
    "googlenet_gap": ("googlenet", {"aux_logits": True, "init_weights": True}),
    "googlenet": ("googlenet", {"aux_logits": True, "init_weights": True}),
}
