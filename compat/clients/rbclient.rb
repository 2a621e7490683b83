# Ruby's Net::HTTP for compat/run-compat.
#
# usage: ruby rbclient.rb net-http URL...   (or: version)
#
# One Net::HTTP.start session (a persistent connection), the requests one
# after the other. Prints per request:
#   RESULT <i> <status> <body length> <md5 of body>
#   ERROR <i> <message>
require 'net/http'
require 'digest/md5'
require 'uri'
$stdout.sync = true
mode, *urls = ARGV
if mode == 'version'
  puts "ruby #{RUBY_VERSION}, net-http #{Net::HTTP::VERSION rescue '?'}"
  exit 0
end
# COMPAT_UPLOAD=PUT|POST (and COMPAT_UPLOAD_FILE): the first request sends
# that file with "Expect: 100-continue"; continue_timeout makes Net::HTTP
# wait for the 100 (without it, it sends the body at once)
up = ENV['COMPAT_UPLOAD']
up_body = up ? File.binread(ENV['COMPAT_UPLOAD_FILE']) : nil
u0 = URI(urls[0])
begin
  Net::HTTP.start(u0.host, u0.port, read_timeout: 300,
                  continue_timeout: (up ? 5 : nil)) do |h|
    urls.each_with_index do |u, i|
      begin
        if i.zero? && up
          rq = (up == 'PUT' ? Net::HTTP::Put : Net::HTTP::Post).new(
            URI(u).request_uri, 'Expect' => '100-continue')
          rq.body = up_body
          rq['Content-Type'] = 'application/octet-stream'
          r = h.request(rq)
        else
          r = h.get(URI(u).request_uri)
        end
        b = r.body || ''
        puts "RESULT #{i + 1} #{r.code} #{b.bytesize} #{Digest::MD5.hexdigest(b)}"
      rescue => e
        puts "ERROR #{i + 1} #{e.class}: #{e.message.gsub(/\s+/, ' ')}"
      end
    end
  end
rescue => e
  puts "ERROR 1 #{e.class}: #{e.message.gsub(/\s+/, ' ')}"
end
