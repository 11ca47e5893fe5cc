"""The web pages' language: English or Simplified Chinese, from the browser's locale, with a switch.

Page strings live here (`STRINGS`); engine messages (stages, errors, warnings) are translated by
`beatsync.messages`, which the JSON API uses too.
"""

from __future__ import annotations

import streamlit as st

from beatsync import messages
from beatsync.errors import BeatSyncError
from beatsync.messages import LANGUAGES, pick_language

STRINGS: dict[str, tuple[str, str]] = {
    # navigation
    "nav.upload": ("Sync a video", "同步视频"),
    "nav.task": ("Result", "结果"),
    "nav.explore": ("Beat explorer", "节拍查看"),
    "nav.tasks": ("My jobs", "我的任务"),
    "language": ("Language", "语言"),
    # upload page
    "upload.title": ("BeatSync", "BeatSync"),
    "upload.intro": ("Put the clean song under your dance-class video, in sync to a few milliseconds, and cut the "
                     "silent parts before and after the music.",
                     "把干净的歌曲放进你的舞蹈课视频里，精确到几毫秒同步，并剪掉音乐前后没有音乐的部分。"),
    "upload.video": ("1. The class video", "1. 课堂视频"),
    "upload.video_help": ("The video filmed in class (its sound is the song played in the room). Accepted: {types}.",
                          "在课堂上拍的视频（里面的声音是现场播放的歌曲）。支持：{types}。"),
    "upload.song": ("2. The clean song", "2. 干净的歌曲"),
    "upload.song_help": ("The song as a file, or a video whose sound is the song. Accepted: {types}.",
                         "歌曲文件，或者声音就是这首歌的视频。支持：{types}。"),
    "upload.limit": ("Up to {mb} MB per file. For a bigger video, trim it to the routine first.",
                     "每个文件最大 {mb} MB。视频更大时，请先剪到舞蹈部分。"),
    "upload.options": ("Options", "选项"),
    "upload.trim": ("Cut the parts without music", "剪掉没有音乐的部分"),
    "upload.trim_help": ("Keeps the music plus a margin before and after it.", "保留音乐部分，以及前后的一小段余量。"),
    "upload.margin": ("Margin kept around the music (seconds)", "音乐前后保留的余量（秒）"),
    "upload.fill": ("Where the song does not play", "歌曲没有播放的地方"),
    "upload.fill_silence": ("Silence", "静音"),
    "upload.fill_original": ("The original sound of the video", "视频原来的声音"),
    "upload.sync": ("Sync", "开始同步"),
    "upload.need_both": ("Choose the class video and the song first.", "请先选择课堂视频和歌曲。"),
    "upload.uploading": ("Saving the files…", "正在保存文件…"),
    "upload.how": ("How it works: BeatSync listens to the class video, finds exactly where the song plays in it "
                   "(two independent methods, so you can compare), and gives back the video with the clean song "
                   "as its sound.",
                   "原理：BeatSync 分析课堂视频的声音，找出歌曲在其中播放的准确位置（用两种独立的方法，方便对比），"
                   "然后输出以干净歌曲为声音的视频。"),
    # task page
    "task.title": ("Result", "结果"),
    "task.none": ("No job selected. Start one on the upload page, or open one of your jobs.",
                  "没有选中的任务。请在上传页面开始一个任务，或者打开你的任务。"),
    "task.open_id": ("Open a job by its id", "按编号打开任务"),
    "task.go_upload": ("Sync a new video", "同步新视频"),
    "task.go_tasks": ("My jobs", "我的任务"),
    "task.files": ("Class video: **{dance}** · Song: **{bgm}**", "课堂视频：**{dance}** · 歌曲：**{bgm}**"),
    "task.id": ("Job id: `{id}` (this page's link shows this job to anyone you send it to)",
                "任务编号：`{id}`（把这个页面的链接发给别人，对方也能看到这个任务）"),
    "task.pending": ("Waiting in the queue", "排队中"),
    "task.processing": ("Working on it", "处理中"),
    "task.elapsed": ("{s} s elapsed", "已用时 {s} 秒"),
    "task.queue": ("{n} job(s) in the queue", "队列中有 {n} 个任务"),
    "task.cancel": ("Cancel", "取消"),
    "task.cancelled": ("The job was cancelled.", "任务已取消。"),
    "task.failed": ("The job failed", "任务失败"),
    "task.try": ("What to try: {hint}", "可以试试：{hint}"),
    "task.retry": ("Run it again", "重新运行"),
    "task.read_only": ("This job was started in another browser session: you can watch it and download its "
                       "results; only that session can cancel, rerun or correct it.",
                       "这个任务是在另一个浏览器会话中创建的：你可以查看并下载结果，只有创建它的会话才能取消、重新运行或修正它。"),
    "task.agree": ("Both methods agree (within {ms} ms): either result is in sync.",
                   "两种方法结果一致（相差 {ms} 毫秒以内）：两个结果都是同步的。"),
    "task.disagree": ("The two methods disagree by {ms} ms: watch both and keep the one whose beats match the "
                      "dancers; you can also correct a result below.",
                      "两种方法相差 {ms} 毫秒：请看两个结果，保留节拍和舞者动作对得上的那个；也可以在下面修正结果。"),
    "task.low_conf": ("Low confidence ({c:.0%}): check that the beats line up in the plot below.",
                      "置信度低（{c:.0%}）：请在下面的图里检查节拍是否对齐。"),
    "task.variant_failed": ("This method could not place the song: {error}", "这种方法没能定位歌曲：{error}"),
    "task.download": ("Download {name}", "下载 {name}"),
    "task.offset": ("Song starts at", "歌曲开始于"),
    "task.offset_help": ("Time in the class video at which the start of the song lines up (negative: the recording "
                         "started after the song began).", "歌曲开头对应的课堂视频时间（负数表示录像开始时歌曲已经在播放）。"),
    "task.tempo": ("Tempo ratio", "速度比"),
    "task.tempo_help": ("How fast the class played the song (0.90 = 90 % speed).", "课堂上播放歌曲的速度（0.90 = 90% 速度）。"),
    "task.confidence": ("Confidence", "置信度"),
    "task.segments": ("Run-throughs", "播放段落"),
    "task.seg_row": ("{a:.2f}–{b:.2f} s of the video ← song {s:.2f} s, speed {r:.3f}",
                     "视频 {a:.2f}–{b:.2f} 秒 ← 歌曲 {s:.2f} 秒起，速度 {r:.3f}"),
    "task.kept": ("Kept {a:.1f}–{b:.1f} s of the video (music {m0:.1f}–{m1:.1f} s).",
                  "保留视频 {a:.1f}–{b:.1f} 秒（音乐在 {m0:.1f}–{m1:.1f} 秒）。"),
    "task.plot": ("Beat grid", "节拍网格"),
    "task.plot_help": ("Zoom in (drag) to see the song's beats (mapped through the alignment) fall on the class "
                       "recording's beats.", "拖动放大，可以看到歌曲的节拍（按对齐结果映射后）落在课堂录音的节拍上。"),
    "task.plot_variant": ("Alignment shown", "显示的对齐结果"),
    "task.alternatives": ("Other places the video matches (repeated sections) and how well",
                          "视频还和歌曲的哪些位置相符（重复段落）及匹配程度"),
    "task.correct": ("Correct a result", "修正结果"),
    "task.correct_help": ("Pick another placement or move the song by a few milliseconds while watching the grid, "
                          "then render that result again. The original results stay.",
                          "选择另一个位置，或者一边看节拍网格一边把歌曲移动几毫秒，然后重新生成这个结果。原来的结果会保留。"),
    "task.placement": ("Placement", "位置"),
    "task.placement_found": ("As found (song at {o:.3f} s)", "原结果（歌曲在 {o:.3f} 秒）"),
    "task.placement_alt": ("Alternative {i}: song at {o:.3f} s (score {s:.0%})", "候选 {i}：歌曲在 {o:.3f} 秒（匹配度 {s:.0%}）"),
    "task.nudge": ("Move the song (ms, + = later)", "移动歌曲（毫秒，正数 = 更晚）"),
    "task.rerender": ("Render the corrected video", "生成修正后的视频"),
    "task.corrections": ("Corrected results", "修正后的结果"),
    "task.correction_of": ("Correction of {variant}: {what}", "{variant} 的修正：{what}"),
    "task.source": ("Original job", "原任务"),
    "task.chosen": ("chosen", "已选"),
    "plot.onset": ("Class recording: onset strength", "课堂录音：起音强度"),
    "plot.class_beats": ("Class recording: beats", "课堂录音：节拍"),
    "plot.song_beats": ("Song beats, mapped ({variant})", "歌曲节拍，映射后（{variant}）"),
    "plot.trimmed": ("cut", "剪掉"),
    "plot.segment": ("run-through {i}", "第 {i} 段"),
    "plot.time": ("Class video time (s)", "课堂视频时间（秒）"),
    "plot.score": ("Match score", "匹配度"),
    "plot.offset": ("Song start in the video (s)", "歌曲在视频中的开始时间（秒）"),
    "plot.beats": ("Beats", "节拍"),
    # explorer
    "explore.title": ("Beat explorer", "节拍查看"),
    "explore.intro": ("Upload any song or video to see its tempo and beat grid.", "上传任意歌曲或视频，查看它的速度和节拍网格。"),
    "explore.file": ("Song or video", "歌曲或视频"),
    "explore.tempo": ("Tempo", "速度"),
    "explore.bpm": ("{bpm:.1f} BPM", "{bpm:.1f} BPM"),
    "explore.count": ("Beats found", "节拍数"),
    "explore.duration": ("Duration", "时长"),
    "explore.running": ("Finding the beats…", "正在查找节拍…"),
    "explore.none": ("No beat found: is there music in this file?", "没有找到节拍：这个文件里有音乐吗？"),
    "explore.time": ("Time (s)", "时间（秒）"),
    # tasks page
    "tasks.title": ("My jobs", "我的任务"),
    "tasks.none": ("No jobs yet in this browser session.", "这个浏览器会话里还没有任务。"),
    "tasks.created": ("started {t}", "创建于 {t}"),
    "status.pending": ("waiting", "排队中"),
    "status.processing": ("processing", "处理中"),
    "status.success": ("done", "完成"),
    "status.failed": ("failed", "失败"),
    "error.title": ("This job cannot be shown", "无法显示这个任务"),
}


def current() -> str:
    """The reader's language: the switch if used, else the browser's locale."""
    if "lang" not in st.session_state:
        st.session_state["lang"] = pick_language(getattr(st.context, "locale", None))
    return st.session_state["lang"]


def t(key: str, **params) -> str:
    text = messages.in_language(STRINGS[key], current())
    return text.format(**params) if params else text


def language_switch() -> None:
    current()
    st.sidebar.selectbox(t("language"), list(LANGUAGES), format_func=LANGUAGES.get, key="lang")


def error(err) -> str:
    """An exception's, or a variant's (``error``, ``error_code``), error in words."""
    return messages.error_text(err.to_dict() if isinstance(err, BeatSyncError) else err, current())


def notice(n) -> str:
    """A notice (``{"code", "params"}``) in words."""
    return messages.notice_message(n, current())


def hint(code: str | None, params: dict | None = None) -> str | None:
    return messages.hint(code, current(), params)
