"""A seeded ECG simulator: the McSharry dynamical model, with three rhythms. SIMULATED data, not clinical.

Morphology follows McSharry, Clifford, Tarassenko & Smith, "A dynamical model
for generating synthetic electrocardiogram signals", IEEE Trans. Biomed. Eng.
50(3), 2003 (the ECGSYN model): a point circles a limit cycle with angular
speed omega = 2*pi / RR, and the ECG is its height z, driven by five Gaussian
"events" (P, Q, R, S, T) at fixed angles:

    dz/dt = -(omega/omega0) * sum_i a_i * dtheta_i * exp(-dtheta_i**2 / (2 b_i**2)) - z

with the paper's angles, amplitudes and widths (Table 1) and its heart-rate
adjustment of the widths (sqrt(HR/60)). Departures from ECGSYN, all on purpose:
omega is constant within each R-R interval (so RR can change beat by beat, which
AF needs); the forcing is scaled by omega/omega0 so wave heights do not shrink
with heart rate (ECGSYN rescales the whole record instead); the z equation is
integrated exactly per sample for piecewise-constant forcing; and respiration
baseline wander, white noise and mains hum are added after integration.

Rhythms (the classes of the bundled ECG demo model):

- ``normal``  normal sinus rhythm, 55-95 bpm, heart-rate variability from the
  Mayer-wave (0.1 Hz) and respiratory (0.25 Hz) bands of McSharry's tachogram;
- ``af-like`` an atrial-fibrillation-like rhythm: irregularly irregular RR
  (coefficient of variation 15-30%), 80-140 bpm, no P waves, 4-9 Hz
  fibrillatory f-waves of 0.02-0.08 mV;
- ``pvc``     sinus rhythm with frequent premature ventricular complexes
  (bigeminy or trigeminy): early beats (55-70% of RR) with wide QRS, no P wave
  and an inverted T, followed by a compensatory pause.

These are caricatures that share the visible features a cardiologist names,
not recordings: a model trained on them says nothing about real patients.
Everything is numpy; the same seed gives the same signal.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from edgerun.errors import UsageError

__all__ = ["RHYTHMS", "EcgStream", "simulate_window"]

RHYTHMS = ("normal", "af-like", "pvc")
_OMEGA0 = 2 * np.pi  # rad/s at 60 bpm
# McSharry et al. 2003, Table 1: P, Q, R, S, T
_THETA = np.array([-np.pi / 3, -np.pi / 12, 0.0, np.pi / 12, np.pi / 2])
_A = np.array([1.2, -5.0, 30.0, -7.5, 0.75])
_B = np.array([0.25, 0.1, 0.1, 0.1, 0.4])
# z of an R wave at 60 bpm is about a_R * b_R**2 / omega0; this gain makes it about 1 mV
_GAIN_MV = _OMEGA0 / (_A[2] * _B[2] ** 2)


@dataclass(frozen=True)
class Record:
    """Per-record (per-patient-like) parameters, drawn once per stream."""

    hr_bpm: float
    gain: float
    noise_mv: float
    wander_mv: float
    wander_hz: float
    mains_mv: float
    mains_hz: float
    af_cv: float
    fwave_mv: float
    fwave_hz: float
    pvc_every: int
    pvc_polarity: float
    phases: tuple[float, ...]


def _draw_record(rhythm: str, rng: np.random.Generator) -> Record:
    hr = {"normal": (55, 95), "af-like": (80, 140), "pvc": (60, 100)}[rhythm]
    return Record(
        hr_bpm=float(rng.uniform(*hr)),
        gain=float(rng.uniform(0.6, 1.6)),
        noise_mv=float(rng.uniform(0.005, 0.03)),
        wander_mv=float(rng.uniform(0.02, 0.25)),
        wander_hz=float(rng.uniform(0.15, 0.4)),
        mains_mv=float(rng.uniform(0.0, 0.02)),
        mains_hz=float(rng.choice([50.0, 60.0])),
        af_cv=float(rng.uniform(0.15, 0.30)),
        fwave_mv=float(rng.uniform(0.02, 0.08)),
        fwave_hz=float(rng.uniform(4.0, 9.0)),
        pvc_every=int(rng.choice([2, 3])),
        pvc_polarity=float(rng.choice([1.0, -1.0])),
        phases=tuple(float(p) for p in rng.uniform(0, 2 * np.pi, 6)),
    )


def _morphology(hr_bpm: float, ectopic: bool, polarity: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(theta, a, b) of one beat: ECGSYN's rate adjustment; a PVC is wide, P-less, with an inverted T."""
    f1 = np.sqrt(hr_bpm / 60.0)
    f2 = np.sqrt(f1)
    theta = _THETA * np.array([f2, f1, 1.0, f1, f2])
    a, b = _A.copy(), _B * f1
    if ectopic:
        widen = 2.6
        b = b * np.array([1.0, widen, widen, widen, 1.3])
        a = a / np.array([1.0, widen, widen, widen, 1.3]) ** 2  # keep peak heights: z ~ a * b**2
        a = a * np.array([0.0, 1.2 * polarity, 1.3 * polarity, 1.5 * polarity, -2.0 * polarity])
        theta = theta * np.array([1.0, 2.0, 1.0, 2.0, 1.2])
    return theta, a, b


class EcgStream:
    """An endless single-lead ECG in mV at ``sample_rate_hz``; ``read(n)`` continues where it stopped.

    ``set_rhythm`` changes the rhythm from the next beat on (the record's baseline,
    gain and noise carry over), so a stream can walk through several rhythms the
    way a Holter recording does. ``read`` also returns each sample's rhythm index.
    """

    def __init__(self, rhythm: str = "normal", sample_rate_hz: float = 250.0, seed: int = 0) -> None:
        if rhythm not in RHYTHMS:
            raise UsageError(f"rhythm {rhythm!r}: expected one of {', '.join(RHYTHMS)}")
        self.fs = float(sample_rate_hz)
        self.rng = np.random.default_rng(seed)
        self.rhythm = rhythm
        self.record = _draw_record(rhythm, self.rng)
        self._records = {rhythm: self.record}
        self._t_index = 0  # samples produced so far
        self._z = 0.0
        # R peaks: time (s), rhythm index, ectopic flag; the first one sits before t=0
        self._r_t = [-float(self.rng.uniform(0.2, 0.8))]
        self._r_kind = [(RHYTHMS.index(rhythm), False)]
        self._beat = 0

    def set_rhythm(self, rhythm: str) -> None:
        if rhythm not in RHYTHMS:
            raise UsageError(f"rhythm {rhythm!r}: expected one of {', '.join(RHYTHMS)}")
        if rhythm not in self._records:
            drawn = _draw_record(rhythm, self.rng)
            base = self.record  # same body, same electrodes: keep gain, noise and wander
            keep = ("gain", "noise_mv", "wander_mv", "wander_hz", "mains_mv", "mains_hz", "phases")
            self._records[rhythm] = replace(drawn, **{k: getattr(base, k) for k in keep})
        self.rhythm = rhythm

    def read(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The next ``n`` samples (float32 mV) and their rhythm indices (int8)."""
        t = (self._t_index + np.arange(n)) / self.fs
        self._t_index += n
        self._beats_until(t[-1] + 2.0 if n else 0.0)
        theta, omega, owner = self._phase(t)
        rec = self.record
        forcing = np.zeros(n)
        kinds = np.asarray(self._r_kind)
        for k in np.unique(owner):
            sel = owner == k
            rhythm_idx, ectopic = int(kinds[k][0]), bool(kinds[k][1])
            r = self._records[RHYTHMS[rhythm_idx]]
            th, a, b = _morphology(r.hr_bpm, ectopic, r.pvc_polarity)
            d = np.angle(np.exp(1j * (theta[sel, None] - th)))  # wrapped to (-pi, pi]
            forcing[sel] = -(omega[sel] / _OMEGA0) * np.sum(a * d * np.exp(-(d**2) / (2 * b**2)), axis=1)
        z = self._integrate(forcing)
        labels = kinds[owner, 0].astype(np.int8)
        ecg = z * _GAIN_MV * rec.gain + self._extras(t, labels)
        return ecg.astype(np.float32), labels

    def _integrate(self, forcing: np.ndarray) -> np.ndarray:
        """dz/dt = forcing - z, exact for forcing held over each sample period, in 1 s blocks (stable)."""
        dt = 1.0 / self.fs
        alpha = np.exp(-dt)
        out = np.empty_like(forcing)
        block = max(1, int(self.fs))
        for lo in range(0, len(forcing), block):
            u = forcing[lo : lo + block] * (1.0 - alpha)
            k = np.arange(1, len(u) + 1)
            # z[k] = alpha**k * z0 + sum_{j<k} alpha**(k-1-j) u[j]
            acc = np.cumsum(u * alpha ** -(k - 1.0))
            out[lo : lo + len(u)] = alpha**k * (self._z + acc / alpha)
            self._z = float(out[lo + len(u) - 1])
        return out

    def _extras(self, t: np.ndarray, labels: np.ndarray) -> np.ndarray:
        r, p = self.record, self.record.phases
        wander = r.wander_mv * np.sin(2 * np.pi * r.wander_hz * t + p[0])
        mains = r.mains_mv * np.sin(2 * np.pi * r.mains_hz * t + p[1])
        noise = self.rng.normal(0.0, r.noise_mv, len(t))
        af = self._records.get("af-like")
        fwave = np.zeros(len(t))
        if af is not None:
            # fibrillatory waves: a slowly frequency-modulated 4-9 Hz oscillation, only during AF beats
            inst = af.fwave_hz * (1 + 0.1 * np.sin(2 * np.pi * 0.3 * t + p[2]))
            fwave = af.fwave_mv * np.sin(2 * np.pi * inst * t + p[3]) * (labels == RHYTHMS.index("af-like"))
        return wander + mains + noise + fwave

    # -- beats -------------------------------------------------------------------------

    def _beats_until(self, t_end: float) -> None:
        while self._r_t[-1] < t_end:
            rec = self._records[self.rhythm]
            rr = 60.0 / rec.hr_bpm
            t_last = self._r_t[-1]
            ectopic = False
            if self.rhythm == "normal":
                p = rec.phases
                mod = 0.04 * np.sin(2 * np.pi * 0.1 * t_last + p[4]) + 0.03 * np.sin(2 * np.pi * 0.25 * t_last + p[5])
                rr *= 1 + mod + 0.01 * self.rng.normal()
            elif self.rhythm == "af-like":
                rr = float(np.clip(rr * (1 + rec.af_cv * self.rng.normal()), 0.3, 1.8))
            else:
                rr, ectopic = self._pvc_interval(rec, rr)
            self._r_t.append(t_last + rr)
            self._r_kind.append((RHYTHMS.index(self.rhythm), ectopic))

    def _pvc_interval(self, rec: Record, rr: float) -> tuple[float, bool]:
        """Every ``pvc_every``-th beat comes early (55-70% of RR); the next interval makes up the pause."""
        self._beat += 1
        prev_ectopic = bool(self._r_kind[-1][1])
        if prev_ectopic:
            coupling = self._r_t[-1] - self._r_t[-2]
            return 2 * rr - coupling, False  # full compensatory pause
        if self._beat % rec.pvc_every == 0:
            return rr * float(self.rng.uniform(0.55, 0.70)), True
        return rr * (1 + 0.01 * self.rng.normal()), False

    def _phase(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """theta in (-pi, pi] (0 at each R peak), omega (rad/s) and the owning beat of every sample."""
        r_t = np.asarray(self._r_t)
        k = np.searchsorted(r_t, t, side="right") - 1  # the R peak at or before each sample
        k = np.clip(k, 0, len(r_t) - 2)
        interval = r_t[k + 1] - r_t[k]
        frac = (t - r_t[k]) / interval
        second_half = frac >= 0.5
        theta = 2 * np.pi * np.where(second_half, frac - 1.0, frac)
        owner = np.where(second_half, k + 1, k)
        return theta, 2 * np.pi / interval, owner


def simulate_window(rhythm: str, seconds: float, sample_rate_hz: float, seed: int) -> np.ndarray:
    """One independent ``seconds``-long record of ``rhythm`` (float32 mV), after a 2 s settling period."""
    stream = EcgStream(rhythm, sample_rate_hz, seed)
    stream.read(int(2 * sample_rate_hz))  # the z equation starts at 0: let it settle
    return stream.read(int(round(seconds * sample_rate_hz)))[0]
