"""Boot control: which slot the bootloader boots, and the trial of a new one.

Three backends behind one interface (:class:`BootControl`): a redundant
environment file (:class:`FileBootControl`, the default and the simulator's),
GRUB's environment block (:class:`GrubBootControl`, via ``grub-editenv``) and
U-Boot's redundant environment (:class:`UBootBootControl`, via
``fw_printenv``/``fw_setenv``). Every change is one durable update, so after a
power loss the environment is the old or the new one. :func:`select_boot` is
the bootloader's rule, mirrored by the scripts in docs/boot-control.md.
"""

from __future__ import annotations

from device_agent.bootctl._base import MAX_ATTEMPTS, SLOT_NAME, BootControl, BootEnv
from device_agent.bootctl._bootloader import select_boot
from device_agent.bootctl.factory import BOOT_CONTROL_KINDS, make_boot_control
from device_agent.bootctl.file import FileBootControl
from device_agent.bootctl.grub import GrubBootControl
from device_agent.bootctl.uboot import UBootBootControl

__all__ = [
    "BOOT_CONTROL_KINDS",
    "MAX_ATTEMPTS",
    "SLOT_NAME",
    "BootControl",
    "BootEnv",
    "FileBootControl",
    "GrubBootControl",
    "UBootBootControl",
    "make_boot_control",
    "select_boot",
]
