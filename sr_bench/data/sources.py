"""Where each dataset's files are downloaded from, and the hash each must have (with its source).

One :class:`Source` per file: its name, its URLs (the official one first; sr_bench tries
``$SR_BENCH_DATA_URL/<file name>`` before all of them), the hash it must have, where that hash was
published, and where it goes under the data root: an archive is unpacked into a folder, a plain
file is put at a path. ``python -m sr_bench.data download NAME`` reads them from the dataset's
registration (``DatasetSpec.sources``).

No third-party copy of these archives is known to hold the same bytes, so no other URL is
listed: a mirror of your own goes in ``$SR_BENCH_DATA_URL``, and the hash says whether it is right.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DATA_URL_ENV", "Source", "benchmark_archive", "div2k_archives", "t91_files"]

DATA_URL_ENV = "SR_BENCH_DATA_URL"


@dataclass(frozen=True)
class Source:
    """One file to download. ``known_hash``: ``md5:HEX`` or ``sha256:HEX`` (None: none is published,
    and the sha256 of the first download is recorded); ``hash_source``: where it was published.
    ``unpack_into``: for an archive, the folder under the data root it is unpacked into;
    ``place_at``: for a plain file, its path under the data root."""

    file_name: str
    urls: tuple[str, ...]
    known_hash: str | None
    hash_source: str
    unpack_into: str = ""
    place_at: str | None = None

    @property
    def is_archive(self) -> bool:
        return self.place_at is None


# EDSR's benchmark archive (Set5, Set14, B100, Urban100 with HR and LR_bicubic/X2..X4).
# Only an md5 is published, by torchSR (Coloquinte/torchSR@d455721694554b268636eb249815f6ef5d8f98ec,
# torchsr/datasets/benchmarks.py, classes Set5/Set14/B100/Urban100); the sha256 of the first
# download is written to DOWNLOADS.tsv.
_BENCHMARK = Source(
    "benchmark.tar",
    ("https://cv.snu.ac.kr/research/EDSR/benchmark.tar",),
    "md5:4ace41d33c2384b97e6b320cd0afd6ba",
    "md5 from Coloquinte/torchSR@d455721694554b268636eb249815f6ef5d8f98ec:torchsr/datasets/benchmarks.py",
)


def benchmark_archive() -> tuple[Source, ...]:
    return (_BENCHMARK,)


DIV2K_BASE_URL = "https://data.vision.ee.ethz.ch/cvl/DIV2K/"

# md5 of the official DIV2K zips, as torchSR lists them (Coloquinte/torchSR@99674a4460bab19e90dd69efab1d33c9006e9562,
# torchsr/datasets/div2k.py, Div2K.urls); no sha256 is published.
_DIV2K_MD5 = {
    "DIV2K_train_HR.zip": "bdc2d9338d4e574fe81bf7d158758658",
    "DIV2K_train_LR_bicubic_X2.zip": "9a637d2ef4db0d0a81182be37fb00692",
    "DIV2K_train_LR_bicubic_X3.zip": "ad80b9fe40c049a07a8a6c51bfab3b6d",
    "DIV2K_train_LR_bicubic_X4.zip": "76c43ec4155851901ebbe8339846d93d",
    "DIV2K_valid_HR.zip": "9fcdda83005c5e5997799b69f955ff88",
    "DIV2K_valid_LR_bicubic_X2.zip": "1512c9a3f7bde2a1a21a73044e46b9cb",
    "DIV2K_valid_LR_bicubic_X3.zip": "18b1d310f9f88c13618c287927b29898",
    "DIV2K_valid_LR_bicubic_X4.zip": "21962de700c8d368c6ff83314480eff0",
}


def div2k_archives(split: str) -> tuple[Source, ...]:
    """The HR zip and the three bicubic LR zips of ``split`` ("train" or "valid"), unpacked into
    ``<root>/DIV2K`` (giving ``DIV2K/DIV2K_<split>_HR`` and ``DIV2K/DIV2K_<split>_LR_bicubic/X<s>``)."""
    names = [f"DIV2K_{split}_HR.zip"] + [f"DIV2K_{split}_LR_bicubic_X{s}.zip" for s in (2, 3, 4)]
    return tuple(
        Source(name, (DIV2K_BASE_URL + name,), f"md5:{_DIV2K_MD5[name]}",
               "md5 from Coloquinte/torchSR@99674a4460bab19e90dd69efab1d33c9006e9562:torchsr/datasets/div2k.py",
               unpack_into="DIV2K")
        for name in names
    )


# T91 (Yang et al., TIP 2010) has no official archive. These are the 91 BMPs of
# jiny2001/dcscn-super-resolution (MIT licence) at a fixed commit, fetched one by one from GitHub's
# raw file host (the content of a commit never changes). Their sha256 were computed by sr_bench from
# the git objects of that commit (no project publishes them); each BMP has the same pixels as the
# PNG of the same name in the staged T91 that MANIFEST.tsv describes.
T91_COMMIT = "d382bc30d41c94ac72f8cb148d61cc4864b3b380"
_T91_URL = f"https://raw.githubusercontent.com/jiny2001/dcscn-super-resolution/{T91_COMMIT}/data/yang91/"
_T91_SHA256 = (
    ("t1.bmp", "bd05fe477d92b3aa241994cf47a5f6d10284d1699032383e5766ad28d6eff71f"),
    ("t2.bmp", "07530d9e4f591cf8c3d265b8ca5a937eaadf5212be27fff694214870422cc3b6"),
    ("t3.bmp", "5f67079bdd259d73214a48ae666e16d596f81503c886cb3f5937a8f91d3b48e5"),
    ("t4.bmp", "3f3a2b46fc984921f3a43aac7a5af48a8ea84d9339df22a8f16fd94ff803c475"),
    ("t5.bmp", "c0f1d5c9c52d1680b24041041ef4809c14e0ba9307b6f5c2e24c818b285e03e3"),
    ("t6.bmp", "1d20ed01c9c399b00476419b459d12128033c17dac8dacc05ca59bfc365da672"),
    ("t7.bmp", "8bf16fd877206e11966f8fc76ded26a457101fe5e39282a20e052f16a0e70787"),
    ("t8.bmp", "6e41c08509badd906bdd8a750004f98bd8db01058b3efeca0b3c9239d544c5a9"),
    ("t9.bmp", "4bc0f253ca708e898f8af77a11358076c78cceae592d64bfebccfecd9b4beaf1"),
    ("t10.bmp", "e8fc08afbbb00b9f421da26ad0beac690740876e7539e6060a60c8c6fb89ddcc"),
    ("t11.bmp", "cf814011d1b663bbcf7d27d112934ce14bb476de902613662f2e29573295a583"),
    ("t12.bmp", "f3bc2de47391e38d832d8a62ed8d373b046787e599778efedcf4193e5587241e"),
    ("t13.bmp", "5f551d7e84f3bab49b5fb2e597d29b3920bbad03bdbb3b898884f0be17e96439"),
    ("t14.bmp", "8c426fa5b413e14213ef7fbb71176cc5cf9c385b0cd9c199b0aa80d4ee326ebd"),
    ("t15.bmp", "ce01dbce740da6f44cb351062daa8ccace91188fe4edf7b408900b58b9f0de13"),
    ("t16.bmp", "594bcc141fa2c8d03cd4927b8e53d3a3b328d4523d083933cd249c9d9f81b13f"),
    ("t17.bmp", "5350a3dc65ace9f753d8ad2b00395b8d2aeb167296481e8ec5392cf288c024ef"),
    ("t18.bmp", "9345e8d5fc59336482fb3f90fe1e4a4a050da39a7a2d81a854abee9bcb86400a"),
    ("t19.bmp", "6639057c940889eebe3d2dbdcc993659090fc868aea550285318ce464de5cf1a"),
    ("t20.bmp", "39a2b362d128edcaa98d88e8d86d7a661f6259c948a171cf1d3bb0e4df901c55"),
    ("t21.bmp", "fb0beade57a0e52da0933de638e0ae828f6fb52ce1181ddd4f2fe7cff045d64e"),
    ("t22.bmp", "87630a34c0ab5549d5823426748d77191b3c2dd317f086d6b440f9f62e3be692"),
    ("t23.bmp", "460529492d4566a3fd9fc7d6a63b01a8b8c569533a920743462de6097b86ce7a"),
    ("t24.bmp", "df30507540996b48aea464e9b93534589bace076def6ee7b8012aba5d271f56a"),
    ("t25.bmp", "0cf73f85d53a03a24dca91375a1a06ec05472d228c197bea1084a5411322d063"),
    ("t26.bmp", "980a88ff7f17e773eff1f118b87b54727c18f2dadd557b909f47eba7223f140d"),
    ("t27.bmp", "70d8212bd5b89604a66dfb813f519768e24f860f606a41dde0e36330ed41a5d5"),
    ("t28.bmp", "9d0fe6e4976fdaefc0a597c24c5a47b4001967cc55058d2ac991ccbdfdd8e5d3"),
    ("t29.bmp", "33b75efca22b76b3db434351c47cdb4fbb088ef39ada7d5b89518233abba242f"),
    ("t30.bmp", "aca3633130f6ba454aa1786d0a4b538f565491f05d0c5ef63e2e78df34c24539"),
    ("t31.bmp", "0ab8dd6051b55d5fe2ac1b0f13fbc107cde69456e33ce34be707d8c5f5336b08"),
    ("t32.bmp", "8ed49320e99808f3b0d3954169b45896421dcbbfeed677154403b99d3fb38980"),
    ("t33.bmp", "e74c567e37afaa350d277f0116141b53ffddeddb032e494aae24589efbf1178a"),
    ("t34.bmp", "1404677d01ebbc0d243b9b6c126410c58578b33b80655d48536e06ff70011d4c"),
    ("t35.bmp", "0630c1f764752a84a94eff48517d41574aefa9068d0ca49f8e614354e933d8cc"),
    ("t36.bmp", "1c628e04ddb923bad98f310aadf1ec140291edd99056c5f78d9ed94e92e6f257"),
    ("t37.bmp", "0be67e122259e02748b823e20766e6db931f1f58835491fff941785b36cbcf11"),
    ("t38.bmp", "3be95aa1e4abdce2ecd56c60f4e0c15bfe0a7375d1b4cb4a5d38cf85ac01143a"),
    ("t39.bmp", "b3b8bd124e9f67f6de5c82159d646c0258780b6e715226f07bbfe37933b474d2"),
    ("t40.bmp", "f85064cb4fee2e866d55da2e7e10295357e4acbd279ae9e5901ac34eb43e68e5"),
    ("t42.bmp", "2c6b199625ad8ce4bfeacfd24ecd03eedce68b40c4201604fd33c8d856ab21ab"),
    ("t43.bmp", "6d4f5598fd57ffdfb3678bb104ed76a827ecdc546b0da710fc60436650b8624d"),
    ("t44.bmp", "400f6877d88414c35bebc97d4d42d31de26318d877fb035e16ead4c1e4230bb9"),
    ("t45.bmp", "b714f0189323ac9a883510a66dc95cc8454946ebda21164d2327fbe62445c8ab"),
    ("t46.bmp", "4aa6f0d8e586fd2cd6461e1dc6b6e02056cfea49e0c1235fcd9c2cb3db6c492a"),
    ("t47.bmp", "942a66177a41e51c5dd639d4c43ac4bf57fd318cafca30e7ed37907d47521783"),
    ("t48.bmp", "9b2b2294b983a03ec65b2334c6bfa27ddb5d4c94810a4c5c5a125c04f92b3aaf"),
    ("t49.bmp", "132459e1c9973afe47761b209cafb51c4e8b6b04d708f5140bfbe4983caaeb77"),
    ("t50.bmp", "ff37d26d2192004b3e7e36731c5633df41355d3956efca6503603aca892c41af"),
    ("t51.bmp", "71327d97cb20376e3a2fe36ad2dc7fe6d5d66e62ba8f9d210b62bda816a98702"),
    ("t52.bmp", "70d47b2c410b38f8088933f7f04b77f6824657c0753b03bbee7bfe2097ffac0b"),
    ("t53.bmp", "b90877ef69053047456269c5667c9c2258ea0589d275df14a277616b8c4c43c5"),
    ("t54.bmp", "9660dd86a4c26e0816970d3a15915d27fa4c99ae70b4e6b715be083c5f751875"),
    ("t55.bmp", "a825655a7e0204bcc32fc639dbceebd1b19683c14bd4e75a654728695ef37dd4"),
    ("t56.bmp", "2a09d5b7d1b2bcdcf33209d46dd3ff4b69008923334517947022d089eb0007f4"),
    ("t57.bmp", "740ccca1f80b2ce0a9ed1d0d9e94c1cd323b089a47bad4605aef16eaa3c77ad9"),
    ("t58.bmp", "4c50e113b15c60f538aec523f7de0274dd4059bb4d3d08e234614c38b7e78358"),
    ("t59.bmp", "efd3270a48e5325f61e9173fbd6bd487431ac8a8d9f263b83113403b91d5426e"),
    ("t60.bmp", "6f93d92cbad459bf30af73d5627f2965156fc4c1997de66ae77f7c33ca599bc4"),
    ("t61.bmp", "bc89907a74c21794db4884b1217f91084df9fd01f844d2d9bf6ac009b550d69f"),
    ("t62.bmp", "24c840e9acbe1430af742a61d89e367b6bc5edbd8080737002af6260a48b5fa8"),
    ("t63.bmp", "ccd48b87c7e71cd27c4fcc3ab99ff70bfd40a06b5d4d37069efcb433ab3d5b7b"),
    ("t64.bmp", "7eb15ab8d32a70f18e528ca40df8e7a055dd5552e1586e0632aeb845abd9442b"),
    ("t65.bmp", "1c628e04ddb923bad98f310aadf1ec140291edd99056c5f78d9ed94e92e6f257"),
    ("t66.bmp", "78efd98a9b89127d06d308d8bfd738ae77d5c087b2500a61b75b86f8ac6afb5b"),
    ("tt1.bmp", "9f3f752f4cff92961b896473dbf1e171268cb4a2114ffa08608dc201702a563c"),
    ("tt2.bmp", "396f2ece3c612792d08cbcf7411a7d9d973c454d26e0fd931094de0891b80d92"),
    ("tt3.bmp", "97134dd606815ff9d2ed720472900e9fe6fa783d72cfa276ee168155cfdfac7d"),
    ("tt4.bmp", "662aceee5e2ba8088789ce785bf6eec38f9f0d9ef45a70ac775aca7cd57038a9"),
    ("tt5.bmp", "96c0d40d5815f88ab28162c5204dc37fa356e223f4b923a8a28f22dbdf0d1882"),
    ("tt6.bmp", "708685aacebd13cd57aa28aff916a86f46584ddbdfcc81cd75fe6d4ce0d6efaf"),
    ("tt7.bmp", "c80f58bf01a7e3036903687896782ed36398fbf95e6803259ded222acf373dd3"),
    ("tt8.bmp", "5c7c290dab40e61c9ff7e8779c4c95fe3211d823f776badd6ffade0a587690d6"),
    ("tt9.bmp", "d451c3b4316519355bfff58331fe8ddc5671d78243f472731137ef4489df76e6"),
    ("tt10.bmp", "25e719b9402adf870a185b516e4c06c6af8636b4bcddaf27dd6042b4b25f9364"),
    ("tt12.bmp", "6ba67c88ffef87bcafc3e5d8723c35e536553eb724f946afd853a5a3f2f35c7e"),
    ("tt13.bmp", "cd333c10b6ed9155553330bde4160348084ffa2fbe73ae02c311c3c161f508b2"),
    ("tt14.bmp", "9fb5b5e3acec47eaa445c987bd541eeace90b4e5083f675682bf5f944fdb59a1"),
    ("tt15.bmp", "5583ad57fd530b24f799385ecd83d6bbf43b35791d083f1314b43fa17da84446"),
    ("tt16.bmp", "3c823a83adf28687291899440f777d548c1b95c0def6c48b37a70b37d6284f4e"),
    ("tt17.bmp", "d9222ee0e9fa51b2119fe91a72015bc97aa11660c2cb06bbbf5b4567dc54eaa3"),
    ("tt18.bmp", "6d861fb17141f137f37ef5e5da365c26fb44e0a5e29c3e51b94a0d2f4b865b42"),
    ("tt19.bmp", "43b829fadc643cdebb6f90aab4c397762284cb958ac48099301a085bfefce402"),
    ("tt20.bmp", "2de65114eec8c7bb1177f82fca2984fdbd734d513fd7712d08a5b4d6214df1e9"),
    ("tt21.bmp", "0631620dc9a1eca76f0b55c40311a903783a72f757105c5aae82edfc7a9ad81d"),
    ("tt22.bmp", "a055857f762b974c52aff8f224f85a472311cbd4f4bacebea9958b7185024828"),
    ("tt23.bmp", "4dfb0015531c77e3c85b560485ce91bdd515b7a2f6b58c8a5128bf81724d6d67"),
    ("tt24.bmp", "d50158cf5d09ede1cab4fa79f15f4c8749381d643494b4689e3eeab31fdd7abe"),
    ("tt25.bmp", "7b188db37073dc19590ac75aae0d50990357f88be2a65585d2a355cc66295c35"),
    ("tt26.bmp", "5e85706af55c13188aae8bdbaf12a152c6377ad4cfe09728297827d17b1a7d60"),
    ("tt27.bmp", "84e0380c9392787e253325a036b7e17774ed87583edd1324e88ce91a30018070"),
)


def t91_files() -> tuple[Source, ...]:
    return tuple(
        Source(name, (_T91_URL + name,), f"sha256:{digest}",
               f"sha256 of jiny2001/dcscn-super-resolution@{T91_COMMIT}:data/yang91/{name}, computed by sr_bench",
               place_at=f"T91/HR/{name}")
        for name, digest in _T91_SHA256
    )
