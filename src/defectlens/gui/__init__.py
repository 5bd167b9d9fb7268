"""The desktop QA Inspector (``defectlens inspector``): a Tk window over :class:`Predictor` and the
shared inspection log.

The package is split so that everything but drawing is testable without a display:
:mod:`~defectlens.gui.settings` (the JSON settings file), :mod:`~defectlens.gui.model` (loading a
bundle, run or plain ONNX file, with the advanced overrides), :mod:`~defectlens.gui.session` (the
scored batch, threshold re-labelling, metrics, filters, navigation), :mod:`~defectlens.gui.scoring`
(background work that reports through a queue), :mod:`~defectlens.gui.logwriter` (the one thread that
reads and writes the inspection log, so a locked log never freezes the window), :mod:`~defectlens.gui.report`
(CSV, summary and verdicts) and :mod:`~defectlens.gui.app` (the controller the window binds to). Only the window,
:mod:`~defectlens.gui.view`, :mod:`~defectlens.gui.draw`, :mod:`~defectlens.gui.panels` and
:mod:`~defectlens.gui.launch`, imports tkinter.
"""
