"""Concept cards: short explanations of the ideas behind each experiment, for a student meeting them first."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Card:
    """One idea: a title, the explanation, what to look for in the measured result, and the question of the
    Learn-page experiment that measures it."""

    key: str
    title: str
    text: str
    look_for: str
    question: str


CARDS = {c.key: c for c in [
    Card("transfer", "Why transfer learning works",
         "A convolutional network learns in layers. The first ones detect edges and colour blobs, the middle ones "
         "textures and parts, the last ones whole objects. Trained on 1.3 million ImageNet photos, those layers "
         "already describe almost any photo well. Transfer learning keeps them and trains only a new last layer "
         "(or nudges the top layers a little) for your classes, so a few dozen images per class can be enough. "
         "A network started from random weights has to learn edges, textures and parts from your images alone, "
         "and a small dataset does not hold enough examples for that.",
         "The pretrained curve starts high and stays ahead; the random one learns slowly and ends far lower.",
         "Pretrained or from scratch?"),
    Card("augmentation", "Why augmentation helps",
         "A model can memorise its training images instead of learning what makes a class: it then scores "
         "near 100% on them and worse on new photos. That difference is the train/validation gap, a sign of "
         "overfitting. Augmentation shows the model a slightly different version of each image every time "
         "(flipped, cropped, recoloured), so memorising the exact pixels no longer pays and it has to rely on "
         "what stays the same: the object. The changes must keep the label true: flipping a cat is still a cat, "
         "but flipping a 6 upside down makes a 9.",
         "With augmentation, training accuracy drops a little and the gap to validation shrinks.",
         "Does augmentation help?"),
    Card("data-size", "Why deep learning needs data",
         "Each training image is one example of what a class can look like. With few examples the model cannot "
         "tell which differences matter (the object) from which do not (the background, the light). Accuracy "
         "usually grows quickly with the first images and then more slowly: every doubling of the data buys a "
         "smaller gain than the one before. Measured on your own classes (the experiment *How much data is enough?* on "
         "the Learn page trains on growing shares of the training images), that curve tells you whether collecting "
         "more photos is worth it, and for which class.",
         "A steep curve at the right-hand end means more data would still help; a flat one means it has levelled off.",
         "How much data is enough?"),
    Card("variability", "Why images vary, and why it matters",
         "The same object gives very different pixels when it is turned, nearer or farther, in dim light or out "
         "of focus. A model only handles the variations it has seen: if every training photo is upright and "
         "sharp, a rotated or blurred one can fool it. Augmentation is one way to show it those variations; "
         "collecting photos in varied conditions is the other.",
         "Accuracy falls as each change gets stronger; a model trained with augmentation falls later.",
         "What fools the model?"),
    Card("label-noise", "Why wrong labels hurt",
         "A model learns whatever the labels say. Some wrong labels in the training set teach it wrong answers and "
         "blur the line between classes; wrong labels in the validation set make its score itself wrong. Because "
         "a mislabelled image usually looks like its true class, a model that did not train on that image tends "
         "to predict the true class with confidence, which is how the Review page finds likely label errors.",
         "Accuracy drops as more labels are flipped, and the ranking finds most of the flipped images.",
         "What do wrong labels cost?"),
]}


def card(key: str) -> Card:
    """The card for an experiment kind or idea ('transfer', 'augmentation', 'data-size', …)."""
    return CARDS[key]
