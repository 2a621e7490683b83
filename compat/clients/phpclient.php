<?php
// PHP clients for compat/run-compat.
//
// usage: php phpclient.php curl|fgc URL...   (or: version MODE)
//
// curl: one curl handle reused for every request (libcurl keeps the
// connection); fgc: file_get_contents() with the http:// stream wrapper
// and its defaults (a new connection per request). Prints per request:
//   RESULT <i> <status> <body length> <md5 of body>
//   ERROR <i> <message>
$mode = $argv[1];
$urls = array_slice($argv, 2);
if ($mode === 'version') {
    if ($urls[0] === 'curl') { $v = curl_version(); echo "PHP " . PHP_VERSION . ", libcurl " . $v['version'] . "\n"; }
    else { echo "PHP " . PHP_VERSION . "\n"; }
    exit(0);
}
if ($mode === 'curl') {
    $h = curl_init();
    foreach ($urls as $k => $u) {
        $i = $k + 1;
        curl_setopt($h, CURLOPT_URL, $u);
        curl_setopt($h, CURLOPT_RETURNTRANSFER, true);
        curl_setopt($h, CURLOPT_TIMEOUT, 300);
        $b = curl_exec($h);
        if ($b === false) { echo "ERROR $i " . curl_error($h) . "\n"; continue; }
        $st = curl_getinfo($h, CURLINFO_RESPONSE_CODE);
        echo "RESULT $i $st " . strlen($b) . " " . md5($b) . "\n";
    }
} else {
    foreach ($urls as $k => $u) {
        $i = $k + 1;
        $b = @file_get_contents($u);
        $st = 0;
        if (isset($http_response_header)) {
            foreach ($http_response_header as $hl) {
                if (preg_match('#^HTTP/\S+ (\d{3})#', $hl, $m)) { $st = (int)$m[1]; }
            }
        }
        if ($b === false) { $e = error_get_last(); echo "ERROR $i " . preg_replace('/\s+/', ' ', $e ? $e['message'] : 'failed') . " (status $st)\n"; continue; }
        echo "RESULT $i $st " . strlen($b) . " " . md5($b) . "\n";
        unset($http_response_header);
    }
}
