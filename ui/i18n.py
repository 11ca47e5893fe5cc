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
    "nav.batch": ("Group takes", "多组视频"),
    "language": ("Language", "语言"),
    # upload page
    "upload.title": ("BeatSync", "BeatSync"),
    "upload.intro": ("Put the clean song under your dance-class video, in sync to a few milliseconds, and cut the "
                     "silent parts before and after the music.",
                     "把干净的歌曲放进你的舞蹈课视频里，精确到几毫秒同步，并剪掉音乐前后没有音乐的部分。"),
    "upload.video": ("1. The class video", "1. 课堂视频"),
    "upload.video_help": ("The video filmed in class (its sound is the song played in the room). Several groups "
                          "filmed dancing the same routine? Choose all their videos (up to {max}): each gets its own "
                          "result, and one ZIP holds them all. Accepted: {types}.",
                          "在课堂上拍的视频（里面的声音是现场播放的歌曲）。几组同学跳同一段舞？可以一次选择所有视频"
                          "（最多 {max} 个）：每个视频都有自己的结果，还可以打包成一个 ZIP 下载。支持：{types}。"),
    "upload.several": ("{n} class videos: one job each, with the same song and options; one page shows them all.",
                       "{n} 个课堂视频：每个视频一个任务，使用同一首歌和相同的选项；一个页面显示全部结果。"),
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
    "upload.how": ("How it works: BeatSync listens to the class video, finds exactly where the song plays in it "
                   "(two independent methods, so you can compare), and gives back the video with the clean song "
                   "as its sound.",
                   "原理：BeatSync 分析课堂视频的声音，找出歌曲在其中播放的准确位置（用两种独立的方法，方便对比），"
                   "然后输出以干净歌曲为声音的视频。"),
    # task page
    "task.title": ("Result", "结果"),
    "task.title_working": ("Working…", "处理中…"),
    "task.title_failed": ("Failed", "失败"),
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
    "task.eta": ("about {t} left", "大约还要 {t}"),
    "task.eta_soon": ("almost done", "马上就好"),
    "task.eta_run": ("takes about {t} once it starts", "开始后大约需要 {t}"),
    "task.queue": ("{n} job(s) in the queue", "队列中有 {n} 个任务"),
    "task.cancel": ("Cancel", "取消"),
    "task.cancelled": ("The job was cancelled.", "任务已取消。"),
    "task.failed": ("The job failed", "任务失败"),
    "task.try": ("What to try: {hint}", "可以试试：{hint}"),
    "task.retry": ("Run it again", "重新运行"),
    "task.other_method": ("Try the other method's result ({variant})", "试试另一种方法的结果（{variant}）"),
    "task.start_over": ("Start again with other files", "换别的文件重新开始"),
    "task.another_song": ("Try another song", "换一首歌试试"),
    "task.another_song_help": ("Your class video ({name}) is kept: choose only the song that was played in the class.",
                               "课堂视频（{name}）会保留：只需选择课堂上播放的那首歌。"),
    "task.another_song_file": ("The clean song", "干净的歌曲"),
    "task.another_song_go": ("Sync with this song", "用这首歌同步"),
    "upload.song_in_video_slot": ("{name} is a sound file: this slot takes the class video ({types}). Put the song "
                                  "in slot 2.",
                                  "{name} 是音频文件：这里要放课堂视频（{types}）。请把歌曲放到第 2 栏。"),
    "upload.fix_files": ("Remove the file that cannot be used (its reason is under it), or choose another.",
                         "请移除无法使用的文件（原因写在它下面），或换一个文件。"),
    "upload.checking": ("Checking {name}…", "正在检查 {name}…"),
    "upload.wrong_type": ("{name} cannot go here: this slot takes {types} files.",
                          "{name} 不能放在这里：这里只接受 {types} 文件。"),
    "task.read_only": ("This job was started in another browser: you can watch it and download its results; only "
                       "that browser can cancel, rerun or correct it.",
                       "这个任务是在另一个浏览器中创建的：你可以查看并下载结果，只有创建它的浏览器才能取消、重新运行或修正它。"),
    "task.your_video": ("Your synced video", "同步好的视频"),
    "task.two_results": ("Two different results", "两个不同的结果"),
    "task.compare": ("Compare methods", "对比两种方法"),
    "task.agree_fact": ("Both methods found the same sync (within {ms} ms).",
                        "两种方法找到的同步位置一致（相差 {ms} 毫秒以内）。"),
    "task.same_file": ("Both methods found exactly the same sync: both downloads are the same video.",
                       "两种方法找到的同步位置完全相同：两个下载是同一个视频。"),
    "task.prefer": ("The methods disagree by {ms} ms. Prefer **{best}**: {why}. Listen to both in the preview "
                    "below if in doubt.",
                    "两种方法相差 {ms} 毫秒。建议选 **{best}**：{why}。拿不准的话，可以在下面的预览里两个都听一听。"),
    "why.confidence": ("it is more confident ({a:.0%} against {b:.0%} for {other})",
                       "它的置信度更高（{a:.0%}，{other} 为 {b:.0%}）"),
    "why.explains": ("it explains more of the video ({a} of music against {b} for {other})",
                     "它解释了视频中更多的音乐（{a}，{other} 为 {b}）"),
    "why.same": ("both are as confident and explain as much of the video; it is the default method",
                 "两者置信度和解释的音乐一样多；它是默认方法"),
    "why.user": ("you chose to try it", "这是你选择试试的结果"),
    "why.join": ("; ", "；"),
    "task.variant_failed": ("{variant} could not place the song: {error}", "{variant} 没能定位歌曲：{error}"),
    "task.download": ("Download {name}", "下载 {name}"),
    "task.details": ("{variant}: confidence {c:.0%} · speed {r:.3f}× · exactly: video {v:.3f} s = song {g:.3f} s",
                     "{variant}：置信度 {c:.0%} · 速度 {r:.3f} 倍 · 精确位置：视频 {v:.3f} 秒 = 歌曲 {g:.3f} 秒"),
    "task.low_conf": ("Low confidence ({c:.0%}): listen in the preview below that the song is in time before you "
                      "use this video.", "置信度低（{c:.0%}）：使用这个视频之前，请先在下面的预览里听一听歌曲是否对得上。"),
    "task.kept": ("Kept {a:.1f}–{b:.1f} s of the video (music {m0:.1f}–{m1:.1f} s).",
                  "保留视频 {a:.1f}–{b:.1f} 秒（音乐在 {m0:.1f}–{m1:.1f} 秒）。"),
    "fact.position": ("The music starts at **{video}** in the video, from **{song}** of the song.",
                      "音乐从视频的 **{video}** 开始，对应歌曲的 **{song}**。"),
    "fact.position_start": ("The music starts at **{video}** in the video, from the start of the song.",
                            "音乐从视频的 **{video}** 开始，从歌曲开头播放。"),
    "fact.restarts": ("{count} run-throughs found (the music was stopped and started again).",
                      "发现 {count} 段播放（音乐停过又重新开始）。"),
    "fact.speed_change": ("The speed changes at {at}: {rate_from:.2f}× then {rate_to:.2f}×.",
                          "速度在 {at} 改变：先 {rate_from:.2f} 倍，然后 {rate_to:.2f} 倍。"),
    "fact.edit_cut": ("Edited version: a section is cut at {at} ({jump_s} s of the song skipped).",
                      "剪辑版：在 {at} 处剪掉了一段（跳过歌曲的 {jump_s} 秒）。"),
    "fact.edit_repeat": ("Edited version: a section is played again at {at} ({jump_s} s of the song repeated).",
                         "剪辑版：在 {at} 处重复播放了一段（歌曲的 {jump_s} 秒）。"),
    "fact.ambiguous_part": ("The music at {start}–{end} matches more than one place in the song: no song is laid "
                            "there.", "{start}–{end} 的音乐和歌曲中不止一处相符，这段没有配上歌曲。"),
    "fact.speed": ("The class played the song at {r:.0%} of its speed.", "课堂上以原速的 {r:.0%} 播放这首歌。"),
    # the sync preview
    "preview.title": ("Hear the sync", "听一听同步效果"),
    "preview.help": ("The class video plays muted with the clean song in your browser, as the result lays it out. "
                     "Move the song by a frame or by 10 ms and hear it at once; when it sounds right, render it.",
                     "课堂视频静音播放，浏览器按结果的位置同时播放干净的歌曲。可以按一帧或 10 毫秒移动歌曲，马上就能听到；"
                     "听着对了再生成视频。"),
    "preview.help_running": ("The videos are still being written: you can listen to the sync already.",
                             "视频还在生成中：现在就可以先听一听同步效果。"),
    "preview.unavailable": ("The preview needs the app's own server (its file links); download the result to check it.",
                            "预览需要应用自带的服务器（文件链接）；请下载结果来检查。"),
    "preview.waiting": ("The preview appears here as soon as the song is found in the video.",
                        "一找到歌曲在视频中的位置，这里就会出现预览。"),
    "pv.title": ("Sync preview", "同步预览"),
    "pv.play": ("▶ Play", "▶ 播放"),
    "pv.pause": ("❚❚ Pause", "❚❚ 暂停"),
    "pv.sound": ("Sound:", "声音："),
    "pv.song": ("Song", "歌曲"),
    "pv.original": ("Class sound", "课堂原声"),
    "pv.loop": ("A/B loop ±2 s", "A/B 循环 ±2 秒"),
    "pv.nudge": ("Move the song:", "移动歌曲："),
    "pv.nudge_input": ("Move the song by (ms, + = later)", "移动歌曲（毫秒，正数 = 更晚）"),
    "pv.minus_frame": ("−1 frame", "−1 帧"),
    "pv.plus_frame": ("+1 frame", "+1 帧"),
    "pv.earlier": ("{ms} ms earlier", "提前 {ms} 毫秒"),
    "pv.later": ("{ms} ms later", "推后 {ms} 毫秒"),
    "pv.reset": ("Reset", "复位"),
    "pv.ms": ("ms", "毫秒"),
    "pv.variant": ("Result:", "结果："),
    "pv.render": ("Render this ({ms} ms)", "生成这个版本（{ms} 毫秒）"),
    "pv.render_later": ("Available when the job is done.", "任务完成后才能生成。"),
    "pv.render_nudge_first": ("Move the song first.", "请先移动歌曲。"),
    "pv.sent": ("Rendering the video moved by {ms} ms: its progress is shown below.",
                "正在生成移动了 {ms} 毫秒的视频：进度显示在下方。"),
    "pv.song_at": ("song", "歌曲"),
    "pv.no_song": ("no song here", "这里没有歌曲"),
    "pv.preliminary": ("First estimate: the two methods are still checking it (a few seconds).",
                       "初步估计：两种方法还在核对（几秒钟）。"),
    "pv.cannot_play": ("This browser cannot play the {what} file; download the result to check it.",
                       "这个浏览器无法播放{what}文件；请下载结果来检查。"),
    "pv.video": ("class video", "课堂视频"),
    "pv.bgm": ("song", "歌曲"),
    "pv.waiting": ("Finding the song in the video… the player is getting ready meanwhile.",
                   "正在视频里查找这首歌……播放器同时在准备。"),
    "pv.quick": ("first estimate", "初步估计"),
    "pv.requested": ("Rendering {variant} moved by {ms:+.0f} ms.", "正在生成移动 {ms:+.0f} 毫秒的 {variant}。"),
    # beat grid and corrections
    "task.plot": ("Beat grid", "节拍网格"),
    "task.plot_help": ("Red: the song's beats where the result puts them in the video. Blue: the class recording's "
                       "own onsets at those beats. On a right result they sit on top of each other; drag the "
                       "slider under the plot to move along the video.",
                       "红色：按结果放进视频里的歌曲节拍。蓝色：课堂录音在这些节拍处自己的起音。结果正确时两者重合；"
                       "拖动图下方的滑块可以沿着视频移动。"),
    "task.plot_variant": ("Result shown", "显示的结果"),
    "grid.summary": ("Beat grid of {variant}: {n} beats of the song fall in {a}–{b} of the video; {m} of them "
                     "({share:.0%}) land on an onset of the class recording, {gap}.",
                     "{variant} 的节拍网格：歌曲有 {n} 拍落在视频的 {a}–{b}；其中 {m} 拍（{share:.0%}）落在课堂录音的起音上，{gap}。"),
    "grid.gap_small": ("within {ms} ms of them", "相差不到 {ms} 毫秒"),
    "grid.gap_late": ("the song's beats about {ms} ms after them", "歌曲的节拍大约晚 {ms} 毫秒"),
    "grid.gap_early": ("the song's beats about {ms} ms before them", "歌曲的节拍大约早 {ms} 毫秒"),
    "grid.runs": ("{n} run-throughs are shown as green bands.", "{n} 段播放显示为绿色区域。"),
    "grid.edits": ("Edit points: {points}.", "剪辑点：{points}。"),
    "grid.unmatched": ("The class recording's own beats could not be picked out here (talk or noise over the "
                       "music, or soft drums), so the grid cannot confirm this result by itself. That is not an "
                       "error: listen with the preview above.",
                       "这里分辨不出课堂录音自己的节拍（音乐上有说话声或噪音，或者鼓点较轻），所以节拍网格无法单独确认这个结果。"
                       "这不是错误：请用上面的预览听一听。"),
    "task.alternatives": ("Other places the video matches (repeated sections) and how well",
                          "视频还和歌曲的哪些位置相符（重复段落）及匹配程度"),
    "alts.summary": ("The chosen placement puts the song's start at {o:.2f} s; {n} other placement(s) match less "
                     "well: {rest}.", "选中的位置把歌曲开头放在 {o:.2f} 秒；另有 {n} 个位置匹配度较低：{rest}。"),
    "task.correct": ("Correct a result", "修正结果"),
    "task.correct_help": ("Pick another placement or move the song by a few milliseconds while watching the grid, "
                          "then render that result again. The original results stay. (The preview above moves "
                          "the song by ear, without waiting.)",
                          "选择另一个位置，或者一边看节拍网格一边把歌曲移动几毫秒，然后重新生成这个结果。原来的结果会保留。"
                          "（上面的预览可以直接用耳朵听着移动歌曲。）"),
    "task.placement": ("Placement", "位置"),
    "task.placement_found": ("As found (song at {o:.3f} s)", "原结果（歌曲在 {o:.3f} 秒）"),
    "task.placement_alt": ("Alternative {i}: song at {o:.3f} s (score {s:.0%})", "候选 {i}：歌曲在 {o:.3f} 秒（匹配度 {s:.0%}）"),
    "task.nudge": ("Move the song (ms, + = later)", "移动歌曲（毫秒，正数 = 更晚）"),
    "task.rerender": ("Render the corrected video", "生成修正后的视频"),
    "task.corrections": ("Corrected results", "修正后的结果"),
    "task.correction_of": ("Correction of {variant}: {what}", "{variant} 的修正：{what}"),
    "task.source": ("Original job", "原任务"),
    "task.batch": ("All the takes synced with this one", "和这个视频一起同步的全部视频"),
    "task.chosen": ("chosen", "已选"),
    "plot.onset": ("Class recording: onset strength", "课堂录音：起音强度"),
    "plot.class_beats": ("Class recording: onsets on the song's beats", "课堂录音：歌曲节拍处的起音"),
    "plot.song_beats": ("Song's beats, placed by {variant}", "歌曲节拍（{variant} 的位置）"),
    "plot.trimmed": ("cut", "剪掉"),
    "plot.segment": ("run-through {i}", "第 {i} 段"),
    "plot.edit_cut": ("cut", "剪切"),
    "plot.edit_repeat": ("repeat", "重复"),
    "plot.speed_change": ("speed", "变速"),
    "plot.time": ("Class video time (s)", "课堂视频时间（秒）"),
    "plot.score": ("Match score", "匹配度"),
    "plot.offset": ("Song start in the video (s)", "歌曲在视频中的开始时间（秒）"),
    "plot.beats": ("Beats", "节拍"),
    "plot.song_onset": ("Song: onset strength", "歌曲：起音强度"),
    "plot.video_onset": ("Video's sound: onset strength", "视频声音：起音强度"),
    "plot.hover_s": ("%{x:.3f} s", "%{x:.3f} 秒"),
    "unit.s": ("{v} s", "{v} 秒"),
    "unit.min_s": ("{m} min {s} s", "{m} 分 {s} 秒"),
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
    "explore.summary": ("{name}: {bpm:.1f} BPM, {n} beats found over {d}; the plot opens on its first 8 seconds "
                        "(drag the slider under it to move along).",
                        "{name}：{bpm:.1f} BPM，{d} 内找到 {n} 拍；图先显示前 8 秒（拖动图下方的滑块可以移动）。"),
    # batch page (several class videos with one song)
    "batch.title": ("Group takes", "多组视频"),
    "batch.title_working": ("Working on the takes…", "正在处理各组视频…"),
    "batch.song": ("**{n}** class videos with the song **{song}**", "**{n}** 个课堂视频，歌曲：**{song}**"),
    "batch.id": ("Batch id: `{id}` (this page's link shows these takes to anyone you send it to)",
                 "批次编号：`{id}`（把这个页面的链接发给别人，对方也能看到这些视频）"),
    "batch.counts": ("{success} done · {processing} working · {pending} waiting · {failed} failed",
                     "完成 {success} 个 · 处理中 {processing} 个 · 排队 {pending} 个 · 失败 {failed} 个"),
    "batch.take": ("Take {n}: {name}", "第 {n} 组：{name}"),
    "batch.zip": ("Download all results as a ZIP ({n} videos)", "下载全部结果 ZIP（{n} 个视频）"),
    "batch.zip_none": ("A ZIP of all the results can be downloaded here as soon as the first take is done.",
                       "第一组完成后，这里就可以下载包含全部结果的 ZIP。"),
    "batch.zip_missing": ("Not in the ZIP (yet): {names}.", "ZIP 里（暂时）还没有：{names}。"),
    "batch.join": (", ", "、"),
    "batch.expired_take": ("an expired take", "已过期的一组"),
    "batch.none": ("No batch selected. Choose several class videos on the upload page to sync them in one go.",
                   "没有选中的批次。在上传页面选择多个课堂视频，就可以一次同步。"),
    "batch.link": ("{song} · {n} takes · started {t}", "{song} · {n} 组 · 创建于 {t}"),
    "batch.error_title": ("These takes cannot be shown", "无法显示这批视频"),
    # tasks page
    "tasks.title": ("My jobs", "我的任务"),
    "tasks.none": ("No jobs yet in this browser. Jobs you start here stay listed on this device, even after a "
                   "reload or a restart of the browser; nobody else sees them.",
                   "这个浏览器里还没有任务。在这里开始的任务会一直列在这台设备上（刷新或重启浏览器后也在），别人看不到。"),
    "tasks.private": ("Listed for this browser only: the jobs started on this device, and the ones opened by link.",
                      "只在这个浏览器中列出：在这台设备上开始的任务，以及通过链接打开的任务。"),
    "line.music": ("music at {video} (song from {song})", "音乐从视频 {video} 开始（歌曲 {song} 处）"),
    "line.runs": ("{n} run-throughs", "{n} 遍完整练习"),
    "line.edited": ("edited version of the song", "剪辑版歌曲"),
    "line.speeds": ("two speeds", "两种速度"),
    "line.agree": ("both methods agree", "两种方法结果一致"),
    "line.differ": ("the methods differ by {ms} ms", "两种方法相差 {ms} 毫秒"),
    "line.correction": ("correction of {variant}", "{variant} 的修正"),
    "line.alternative": ("placement {n}", "位置 {n}"),
    "line.nudge": ("{ms:+d} ms", "{ms:+d} 毫秒"),
    "tasks.created": ("started {t}", "创建于 {t}"),
    "tasks.took": ("took {t}", "用时 {t}"),
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


def seconds(v: float, digits: int = 1) -> str:
    """A number of seconds with its unit, in the reader's language ("3.5 s", "3.5 秒")."""
    return t("unit.s", v=f"{v:.{digits}f}")


def clock(v: float) -> str:
    """A time in the video or the song as minutes and seconds ("0:03", "1:41"), to the nearest second."""
    s = max(0, int(v + 0.5))  # (half up: 2.5 s reads 0:03)
    return f"{s // 60}:{s % 60:02d}"


def duration(v: float) -> str:
    """A length of time in words ("45 s", "1 min 20 s"; Chinese "45 秒", "1 分 20 秒")."""
    s = max(0, int(round(v)))
    return t("unit.s", v=s) if s < 60 else t("unit.min_s", m=s // 60, s=s % 60)
