"""Every message a user reads, in English and Simplified Chinese.

The engine, the task system and the service produce messages as a code plus parameters (an error
``error_code`` + ``error_params``, a stage + ``stage_params``, a notice ``{"code", "params"}``),
with an English sentence alongside. This module turns them into the reader's language where they
are shown: the web pages (`ui`), the JSON API (`localize_status`, `localize_error`, by
``Accept-Language``). English error texts are the engine's own (they name the exact problem); the
task system's, which knows no wording of its own, come from `task_error` and `stage_text`. The
Chinese ones come from the tables below, and a code without a Chinese entry falls back to English.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any

from beatsync.contract import ENGINES, FAILED, ErrorBody, Notice, Status, align_stage, render_stage

LANGUAGES = {"en": "English", "zh": "简体中文"}
DEFAULT_LANGUAGE = "en"


def pick_language(accept_language: str | None) -> str:
    """``"zh"`` or ``"en"`` from an Accept-Language header (or a browser locale such as ``zh-CN``)."""
    best, best_q = DEFAULT_LANGUAGE, -1.0
    for part in (accept_language or "").split(","):
        tag, _, params = part.strip().partition(";")
        tag = tag.strip().lower()
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        lang = tag.split("-")[0].split("_")[0]
        if lang in LANGUAGES and q > best_q:
            best, best_q = lang, q
    return best


class _Missing(dict):
    def __missing__(self, key):
        raise KeyError(key)


def _fill(template: str, params: dict | None) -> str | None:
    try:
        return string.Formatter().vformat(template, (), _Missing(params or {}))
    except (KeyError, IndexError, ValueError):
        return None


# ----------------------------------------------------------------------------- stages

def in_language(entry: tuple[str, str], lang: str) -> str:
    """The text of an ``(English, Chinese)`` pair for ``lang``."""
    return entry[1] if lang == "zh" else entry[0]


STAGES = {  # stage -> (English, Chinese); English is used when a record has no message
    "queued": ("Waiting for a free worker", "排队中，等待空闲的处理进程"),
    "restarted": ("Waiting: the server restarted", "等待中：服务器已重启，任务会继续"),
    "retry": ("Interrupted; running it again (attempt {attempt} of {max})",
              "处理中断，正在重新运行（第 {attempt} 次，共 {max} 次）"),
    "start": ("Starting", "开始处理"),
    "probe": ("Reading the files", "读取文件"),
    "decode": ("Decoding the sound", "解码声音"),
    "analyse": ("Analysing rhythm and harmony", "分析节奏与和声"),
    **{align_stage(e): (f"Finding the song in the video ({e})", f"在视频中寻找歌曲（{e}）") for e in ENGINES},
    "trim": ("Finding where the music plays", "确定音乐播放的范围"),
    **{render_stage(e): (f"Writing the {e} video", f"生成 {e} 视频") for e in ENGINES},
    "render": ("Writing the video", "生成视频"),
    "done": ("Done", "完成"),
    "cancelled": ("Cancelled", "已取消"),
    "time_limit": ("Stopped: time limit", "已停止：超出时间限制"),
    "failed": ("Failed", "失败"),
}


def stage_message(stage: str | None, lang: str, *, params: dict | None = None, fallback: str = "") -> str:
    entry = STAGES.get(stage or "")
    if entry is None:
        return fallback
    if lang == "en" and fallback:
        return fallback
    return _fill(in_language(entry, lang), params) or fallback or entry[0]


def stage_text(stage: str, **params) -> str:
    """A stage's English text (what the task system records as a task's ``message``)."""
    return _fill(STAGES[stage][0], params) or STAGES[stage][0]


# ----------------------------------------------------------------------------- errors (English)

# The English text of the errors the task system and the service raise themselves (the engine's
# errors carry their own English, which names the exact problem).
ERRORS_EN = {
    "busy": "BeatSync is busy: {queued} jobs are already waiting. Please try again in a few minutes.",
    "busy_batch": "BeatSync is busy: {queued} jobs are already waiting, so there is no room for the {asked} class "
                  "videos of this batch. Please try again in a few minutes, or send fewer at a time.",
    "store_unavailable": "BeatSync cannot reach its task store (Redis) just now. Please try again in a minute.",
    "bad_id": "{value} is not a valid {what} id.",
    "cancelled": "The job was cancelled.",
    "time_limit": "The job took longer than the {limit_text} limit and was stopped. A shorter or smaller video "
                  "usually helps.",
    "crashed": "The job stopped unexpectedly {attempts} times; the last time, {why}.{advice}",
    "internal": "Something went wrong inside BeatSync while running this job.",
    "failed": "The job failed.",
    "results_missing": "The job finished but its result files are missing.",
}
#: why a job's process ended without a report (``error_params["reason"]``), (English, Chinese). What is
#: known, nothing guessed: an exit code, a signal, and "out of memory" only when the kernel counted an
#: out-of-memory kill meanwhile (``oom``, `beatsync.tasks.oom`)
REASONS = {"exit": ("the job process ended unexpectedly (exit {exit_code})", "任务进程意外退出（退出码 {exit_code}）"),
           "signal": ("the job process was killed by signal {signal}", "任务进程被信号 {signal} 终止"),
           "ffmpeg_signal": ("{step_text} was killed by signal {signal}", "{step_text}的进程被信号 {signal} 终止"),
           "worker_lost": ("its worker stopped responding", "处理它的工作进程失去了响应")}
#: what was running when a decoder or the video writer was killed (``error_params["step"]``)
STEPS = {"decode": ("the sound decoder", "解码声音"), "render": ("the video writer", "生成视频"),
         "media": ("the file reader", "读取文件")}
OOM = ("by the kernel's out-of-memory killer: the server ran out of memory", "内核因服务器内存不足而终止了它")
OOM_ADVICE = (" A shorter or lower-resolution video needs less memory.", "较短或分辨率较低的视频需要的内存更少。")


def task_error(key: str, **params) -> str:
    """The English text of one of the task system's errors (`ERRORS_EN`); ``params`` as its
    ``error_params``."""
    return _fill(ERRORS_EN[key], _error_params(params)) or ERRORS_EN[key]


# ----------------------------------------------------------------------------- errors (Chinese)

ERRORS_ZH = {
    "song_not_found": "在这个视频里没有找到这首歌：视频的声音和歌曲文件对不上（请确认选对了歌曲，并且视频里录到了音乐）。",
    "no_audio": "{name} 没有声音轨道，无法匹配。",
    "no_video": "{name} 没有画面：课堂视频必须是视频文件，这个文件只有声音。",
    "not_media": "{name} 不是可以播放的音频或视频文件。",
    "truncated": "{name} 不完整：只有前 {playable_text}可以播放（文件应有 {duration_text}）。上传或复制可能中断了，"
                 "请重新复制或导出后再上传。",
    "truncated_part": "{name} 不完整：只有前 {playable_text}可以播放。上传或复制可能中断了，请重新复制或导出后再上传。",
    "truncated_none": "{name} 不完整：文件在能够播放的部分之前就被截断了。请重新复制或导出后再上传。",
    "empty_file": "{name} 是空文件（0 字节）。",
    "no_streams": "{name} 里既没有声音也没有画面。",
    "unreadable": "无法读取 {name}。",
    "file_missing": "找不到文件 {name}。",
    "decode_failed": "无法解码 {name}，文件已损坏。",
    "encode_failed": "无法用 {name} 生成结果视频（{reason}）。",
    "too_short": "{file} 的声音太短，无法分析。",
    "silent": "{file} 的声音是静音的。",
    "unsupported_type": "不支持这种文件类型：请上传 mp4、mov、m4v、mkv、webm、avi 视频，或 mp3、m4a、aac、wav、flac、ogg、opus 音频。",
    "unsupported_media_type": "请求格式不对：上传请用 multipart/form-data，提交任务请用 JSON。",
    "too_large": "文件太大：上限是 {limit_mb} MB。",
    "incomplete_upload": "上传在文件传完之前中断了，请重新上传。",
    "disk_full": "服务器磁盘空间不足，暂时无法接收文件，请稍后再试。",
    "busy": "BeatSync 正忙：已有 {queued} 个任务在排队，请过几分钟再试。",
    "store_unavailable": "BeatSync 暂时连不上任务存储（Redis），请一分钟后再试。",
    "bad_id": "这个编号格式不对。",
    "bad_request": "请求格式不对。",
    "bad_option": "选项的值不对。",
    "bad_variant": "结果名称只能是 modular 或 v2。",
    "not_found": "没有这个任务：请检查链接，或者开始一个新任务。",
    "expired": "这个任务的结果已过期并被删除，请重新上传文件。",
    "expired_batch": "这批任务的结果已过期并被删除，请重新上传文件。",
    "batch_not_found": "没有这批任务：请检查链接，或者重新上传视频和歌曲。",
    "too_many_takes": "一批最多只能有 {limit} 个课堂视频（这次有 {count} 个），请分几批提交。",
    "not_ready_batch": "这批任务还没有完成的结果，暂时无法下载 ZIP。",
    "busy_batch": "BeatSync 正忙：已有 {queued} 个任务在排队，放不下这批的 {asked} 个视频。请过几分钟再试，或者分几批提交。",
    "file_not_found": "找不到上传的文件（上传的文件只保留一段时间），请重新上传。",
    "not_ready": "这个任务还没有成功完成，暂时没有可下载的结果。",
    "no_output": "这个任务没有 {variant} 结果（这种方法没能定位歌曲），请下载另一个结果。",
    "no_input": "这个任务的文件已经不在了。",
    "bad_parameter": "参数的值不对。",
    "already_finished": "这个任务已经结束，无需取消。",
    "not_finished": "这个任务还在运行，结束后才能重新运行。",
    "cancelled": "任务已取消。",
    "time_limit": "任务运行超过了 {limit_min} 分钟的时间限制，已被停止。较短或较小的视频通常可以解决。",
    "crashed": "任务意外停止了 {attempts} 次；最后一次是{why}。{advice}",
    "internal": "BeatSync 内部出错了。请重试；如果问题一直存在，请告诉我们。",
    "ffmpeg_failed": "处理视频时出错，文件可能已损坏。",
    "ffmpeg_killed": "视频处理被信号 {signal} 终止了。",
    "ffmpeg_timeout": "视频处理超时。",
    "write_failed": "无法写入结果文件（磁盘可能已满）。",
    "bad_json": "请求内容不是有效的 JSON（或嵌套太深、数字超出范围）。",
    "bad_multipart": "无法读取上传的 multipart 内容：请检查分隔符（boundary）和各部分的头信息。",
    "bad_path": "这个路径不允许使用（不能包含 '..' 或空字符）。",
    "bad_range": "无法读取 Range 请求头。",
    "range_not_satisfiable": "请求的字节范围超出了文件大小。",
    "method_not_allowed": "这个接口不支持这种请求方法。",
    "body_timeout": "请求内容停止传输的时间太长，请求已被放弃，请重新发送。",
    "quota_exceeded": "服务器用于上传和结果的存储空间已满，请稍后再试（旧结果会在一段时间后删除），或换一个更小的文件。",
    "owner_required": "只有创建者才能进行这个操作：请发送 owner token（Authorization: Bearer <owner_token> 或 X-BeatSync-Owner）。",
    "not_owner": "这个 owner token 无权控制它。分享的链接只能查看和下载结果，不能修改。",
    "bad_owner_token": "owner token 格式不对：应为 22 到 128 个字母、数字、'-' 或 '_'。",
    "cross_origin": "只接受本站页面发出的修改请求，不接受其他网站发出的请求。",
    "api_key_required": "这个接口需要 API 密钥：请在 X-API-Key 请求头中发送。",
    "bad_api_key": "API 密钥（X-API-Key）不正确。",
}

# What to try, per error code (shown under a failed task).
HINTS = {
    "song_not_found": ("Check that you picked the song that was played in the class, and that the video's sound "
                       "has the music.", "请确认选择的是课堂上播放的那首歌，并且视频里录到了音乐。"),
    "no_audio": ("Choose a video that recorded sound.", "请选择录有声音的视频。"),
    "not_media": ("Export the file again from your phone or editor, then upload it.", "请从手机或剪辑软件重新导出文件后再上传。"),
    "truncated": ("The file is incomplete: copy or export it again.", "文件不完整：请重新复制或导出。"),
    "time_limit": ("Trim the video to the routine, or lower its resolution.", "请把视频剪到舞蹈部分，或降低分辨率。"),
    "crashed": ("Run it again; if it keeps stopping, tell us.", "请重新运行；如果一直停止，请告诉我们。"),
    "decode_failed": ("Export the file again from your phone or editor, then upload it.",
                      "请从手机或剪辑软件重新导出文件后再上传。"),
    "busy": ("Wait a few minutes and try again.", "请等几分钟再试。"),
    "store_unavailable": ("Try again in a minute.", "请一分钟后再试。"),
    "disk_full": ("Try again later.", "请稍后再试。"),
}


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} minutes" if seconds >= 120 else f"{seconds:.0f} seconds"


def _clock(seconds: float, lang: str) -> str:
    """A length in words: ``"42.5 s"`` / ``"42.5 秒"``, ``"3:07"``, ``"1:02:07"``."""
    s = max(0.0, float(seconds))
    if s < 60:
        return f"{s:.1f} 秒" if lang == "zh" else f"{s:.1f} s"
    m, sec = divmod(int(round(s)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def _error_params(params: Mapping | None, lang: str = "en") -> dict:
    """An error's params with what its templates derive from them (sizes in MB, durations in words, why
    a job crashed), in ``lang``."""
    p = dict(params or {})
    if "limit" in p and isinstance(p["limit"], int | float):
        p.setdefault("limit_mb", round(p["limit"] / 2**20))
    if "limit_s" in p and isinstance(p["limit_s"], int | float):
        p.setdefault("limit_min", round(p["limit_s"] / 60))
        p.setdefault("limit_text", _minutes(p["limit_s"]))
    for key in ("playable_s", "duration_s"):
        if isinstance(p.get(key), int | float):
            p.setdefault(key[:-2] + "_text", _clock(p[key], lang))
    if p.get("step") in STEPS:
        p.setdefault("step_text", in_language(STEPS[p["step"]], lang))
    if p.get("reason") in REASONS:
        why = _fill(in_language(REASONS[p["reason"]], lang), p) or p["reason"]
        if p.get("oom"):
            why += f"（{OOM[1]}）" if lang == "zh" else f" ({OOM[0]})"
        p.setdefault("why", why)
        p.setdefault("advice", in_language(OOM_ADVICE, lang) if p.get("oom") else "")
    return p


def _zh_key(code: str, params: Mapping | None) -> str:
    """The Chinese template of ``code`` that fits its params (a truncated file: how much plays; an error
    about a batch rather than a task: ``what`` batch; a full queue for a whole batch: ``asked``)."""
    p = params or {}
    if code == "truncated":
        if not p.get("playable_s"):
            return "truncated_none"
        if not p.get("duration_s"):
            return "truncated_part"
    if (p.get("what") == "batch" or (code == "busy" and "asked" in p)) and f"{code}_batch" in ERRORS_ZH:
        return f"{code}_batch"
    return code


#: which of a batch's class videos an error is about (``error_params`` ``take``, ``takes``)
TAKE = ("Class video {take} of {takes}: ", "第 {take} 个课堂视频（共 {takes} 个）：")


def take_prefix(lang: str, params: Mapping | None) -> str:
    """What goes before an error about one of a batch's class videos ("" for any other error)."""
    p = params or {}
    if not isinstance(p.get("take"), int) or not isinstance(p.get("takes"), int):
        return ""
    return _fill(in_language(TAKE, lang), p) or ""


def error_message(code: str | None, lang: str, *, params: Mapping | None = None, fallback: str = "") -> str:
    """The error in the reader's language (English: the engine's own message)."""
    if lang == "zh" and code in ERRORS_ZH:
        text = _fill(ERRORS_ZH[_zh_key(code, params)], _error_params(params, lang))
        if text:
            return take_prefix(lang, params) + text
    return fallback or (code or "")


def hint(code: str | None, lang: str, params: Mapping | None = None) -> str | None:
    """What to try after a failure with ``code`` (its ``params`` may say more: a crash for lack of
    memory)."""
    if code == "crashed" and (params or {}).get("oom"):
        return in_language(("Try a shorter or lower-resolution video.", "请试试更短或分辨率更低的视频。"), lang)
    entry = HINTS.get(code or "")
    return None if entry is None else in_language(entry, lang)


# ----------------------------------------------------------------------------- notices (warnings)

NOTICES = {
    "engines_disagree": ("The two methods disagree by {ms} ms: compare both results and keep the one in time.",
                         "两种方法的结果相差 {ms} 毫秒：请对比两个结果，保留节拍对得上的那个。"),
    "ambiguous": ("{engine}: the video matches more than one place in the song (a repeated chorus?): check the "
                  "alternatives.", "{engine}：视频和歌曲中不止一处相符（副歌重复？），请查看其他候选位置。"),
    "low_confidence": ("{engine}: only part of the recording matches the song: check the result.",
                       "{engine}：录音只有一部分和歌曲相符，请检查结果。"),
    "restarts": ("{engine}: {count} run-throughs found: the music was stopped and restarted.",
                 "{engine}：发现 {count} 段播放：音乐中途停过又重新开始。"),
    "speed_change": ("{engine}: the speed changes at {at} ({rate_from:.2f}x to {rate_to:.2f}x).",
                     "{engine}：速度在 {at} 处改变（{rate_from:.2f} 倍变为 {rate_to:.2f} 倍）。"),
    "edit_cut": ("{engine}: edited version of the song: {jump_s} s are cut at {at}.",
                 "{engine}：歌曲是剪辑版：在 {at} 处剪掉了 {jump_s} 秒。"),
    "edit_repeat": ("{engine}: edited version of the song: {jump_s} s are played again at {at}.",
                    "{engine}：歌曲是剪辑版：在 {at} 处重复播放了 {jump_s} 秒。"),
    "ambiguous_part": ("{engine}: the music at {start}-{end} matches more than one place in the song: no song is "
                       "laid there.", "{engine}：{start}-{end} 的音乐和歌曲中不止一处相符，这段没有配上歌曲。"),
    "engine_failed": ("{engine} could not place the song; use the other result.",
                      "{engine} 没能定位歌曲，请使用另一个结果。"),
    "same_result": ("{engine} found the same result as {same_as} (within 1 ms): both videos are the same file.",
                    "{engine} 与 {same_as} 的结果相同（相差不到 1 毫秒）：两个视频是同一个文件。"),
    "alternative_chosen": ("Alternative placement {number} chosen by hand.", "已手动选择候选位置 {number}。"),
    "nudged": ("Moved {ms:+d} ms by hand.", "已手动移动 {ms:+d} 毫秒。"),
}


def notice_message(notice: Notice | dict, lang: str) -> str:
    n = notice if isinstance(notice, Notice) else Notice.model_validate(notice)
    entry = NOTICES.get(n.code)
    if entry is None:
        return n.code
    return _fill(in_language(entry, lang), n.params) or _fill(entry[0], n.params) or n.code


# ----------------------------------------------------------------------------- status objects and errors


def status_stage(status: Status, lang: str) -> str:
    """A status's stage in ``lang`` (its recorded ``message`` in English)."""
    return stage_message(status.stage, lang, params=status.stage_params, fallback=status.message or "")


def error_text(err: Any, lang: str) -> str:
    """The error of anything with ``error``/``error_code``/``error_params`` (a failed `Status`, a
    variant, an `ErrorBody`, or such a dict) in ``lang``."""
    if isinstance(err, Mapping):
        code, params, text = err.get("error_code"), err.get("error_params"), err.get("error")
    else:
        code, params, text = err.error_code, getattr(err, "error_params", None), err.error
    return error_message(code, lang, params=params, fallback=text or "")


def localize_status(status: Status, lang: str) -> Status:
    """``status`` with ``message``, ``error`` and ``warnings_localized`` in ``lang``; fields unchanged."""
    return status.model_copy(update={
        "message": status_stage(status, lang),
        "error": error_text(status, lang) if status.status == FAILED else status.error,
        "warnings_localized": [notice_message(n, lang) for n in status.notices],
        "language": lang})


def localize_error(body: ErrorBody, lang: str) -> ErrorBody:
    """An error body with ``error`` in ``lang``."""
    return body.model_copy(update={"error": error_text(body, lang)})
